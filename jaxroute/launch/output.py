"""What the apps print: readable tables, strict JSON lines, progress lines, paths."""

from __future__ import annotations

import json
import math
import sys
import time

from absl import flags, logging


def define_json():
    """The ``--json`` flag of an app whose default output is readable tables (defined
    once per process, however many app modules ask for it)."""
    if "json" in flags.FLAGS:
        return flags.FlagHolder(flags.FLAGS, flags.FLAGS["json"])
    return flags.DEFINE_bool("json", False, "Print one JSON object instead of readable tables.")


def json_safe(obj, where: str = "$"):
    """``obj`` with every NaN/inf float replaced by None, one warning per replacement
    naming its place (``$.tasks.mmlu.cosine``): no app prints invalid JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        logging.warning("%s is %s; written as null", where, obj)
        return None
    return obj


def print_json(obj) -> None:
    """One JSON line on stdout (strict JSON: no NaN, see :func:`json_safe`)."""
    print(json.dumps(json_safe(obj), allow_nan=False))


_T0 = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr, with the seconds since the app started."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def table(rows, headers, floatfmt: str = ".4g") -> str:
    """A plain-text table (left-aligned columns; floats with ``floatfmt``, None as —)."""

    def cell(v):
        if v is None:
            return "—"
        if isinstance(v, float):
            return f"{v:{floatfmt}}"
        return str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[j]) for r in body)) for j, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    sep = "  ".join("-" * w for w in widths)
    rest = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(x.rstrip() for x in [line, sep, *rest])


def print_paths(paths) -> None:
    """Where the report went, one ``kind: path`` line each."""
    print("\nwritten:")
    width = max(map(len, paths))
    for kind, path in paths.items():
        print(f"  {kind.ljust(width)}  {path}")
