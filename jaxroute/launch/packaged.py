"""``--flagfile``: a file of flags, or a packaged one by name, expanded in place.

The apps expand every ``--flagfile`` themselves (nested ones too) before any flag is
parsed, so that the command line is one flat list read left to right: a flag after a
``--flagfile`` replaces the flagfile's value of it, whatever the value's type
(``--config.seeds='(42,43)'`` after a flagfile that sets ``seeds`` gives ``(42, 43)``).
"""

from __future__ import annotations

import os
import pathlib

FLAGS_DIR = pathlib.Path(__file__).resolve().parent / "flags"  # launch/NAME.flags in docs


def packaged_flagfiles() -> list[str]:
    """Names of the flagfiles shipped in the package (``equirouter_synthetic``, ...)."""
    return sorted(p.stem for p in FLAGS_DIR.glob("*.flags"))


def resolve_flagfile(name: str) -> str:
    """``--flagfile`` value -> a path: an existing file, else the packaged flagfile of that
    name (``equirouter_synthetic``, ``equirouter_synthetic.flags`` or
    ``launch/equirouter_synthetic.flags``), from any working directory."""
    if os.path.isfile(name):
        return name
    stem = pathlib.Path(name).name.removesuffix(".flags")
    candidate = FLAGS_DIR / f"{stem}.flags"
    if stem and candidate.is_file():
        return str(candidate)
    raise ValueError(
        f"--flagfile={name}: no file '{name}' and no packaged flagfile '{stem}' "
        f"(packaged: {', '.join(packaged_flagfiles())})"
    )


def flagfile_lines(path: str) -> list[str]:
    """The flags of a flagfile: one per line; blank lines and lines starting with ``#``
    or ``//`` (after leading spaces) are skipped."""
    try:
        text = pathlib.Path(path).read_text()
    except OSError as e:
        raise ValueError(f"--flagfile={path}: cannot read it ({e.strerror})") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", "//"))]


def _flagfile_value(argv: list[str], i: int) -> tuple[str, int] | None:
    """``(value, args used)`` when ``argv[i]`` is a ``--flagfile`` flag, else None."""
    arg = argv[i]
    for key in ("--flagfile", "-flagfile"):
        if arg.startswith(key + "="):
            return arg[len(key) + 1 :], 1
        if arg == key:
            if i + 1 >= len(argv):
                raise ValueError(f"{key}: give a file (--flagfile=FILE)")
            return argv[i + 1], 2
    return None


def expand_flagfiles(args: list[str], _stack: tuple[str, ...] = ()) -> list[str]:
    """``args`` with every ``--flagfile`` replaced by its flags, recursively, in place
    (arguments after a ``--`` are left alone)."""
    out, i = [], 0
    while i < len(args):
        if args[i] == "--":
            out += args[i:]
            break
        found = _flagfile_value(args, i)
        if found is None:
            out.append(args[i])
            i += 1
            continue
        value, used = found
        path = resolve_flagfile(value)
        real = os.path.realpath(path)
        if real in _stack:
            raise ValueError(f"--flagfile={value}: includes itself ({' -> '.join(_stack)})")
        out += expand_flagfiles(flagfile_lines(path), (*_stack, real))
        i += used
    return out
