"""Flags, start-up and exit codes shared by the apps (each app stays a thin wrapper).

Exit codes (README "Reliability"): every app runs through :func:`run`, which maps the
exception classes of :data:`EXIT_CODES` to one ``error: ...`` line on stderr and a code:
2 for bad input (data, config, flags, a workdir that belongs to another run or is in
use), 1 for failures of the run itself (checkpoint or OS errors such as a full disk, a
diverged loss). The full traceback is logged at ``--verbosity=1``. Any other exception
is a bug: absl prints its traceback and exits 1.
"""

from __future__ import annotations

import json
import logging as std_logging
import math
import os
import pathlib
import sys
import time

import jax
from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags import config_flags as _config_flags_impl

DATA_PATH = flags.DEFINE_string(
    "data_path", None, "Data file or folder (or synthetic[:k=v,...]); overrides config.data.path."
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Workdir: config.json, checkpoints, metrics.jsonl, report and figures."
)
DROP_INCOMPLETE = flags.DEFINE_bool(
    "drop_incomplete", False, "Drop samples with a model missing after merging (logged)."
)
COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-process runs (--config.devices.distributed): host:port of process 0's JAX "
    "coordinator (default $JAX_COORDINATOR_ADDRESS, else JAX's cluster auto-detection).",
)
NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process runs: number of processes (default $JAX_NUM_PROCESSES)."
)
PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process runs: this process, 0..N-1 (default $JAX_PROCESS_ID)."
)
DATA_FORMAT = flags.DEFINE_string(
    "data_format", None, "auto | wide | long | generic | synthetic | tfds; overrides the config."
)


def apply_data_flags(config):
    """``--data_path`` / ``--data_format`` win over the config (every app that reads data)."""
    with config.unlocked():
        if DATA_PATH.value:
            config.data.path = DATA_PATH.value
        if DATA_FORMAT.value:
            config.data.format = DATA_FORMAT.value
    if not config.data.path:
        raise ValueError("no data: give --data_path=PATH (or set config.data.path)")
    return config


def load_data_or_exit():
    """``--data_path`` loaded and validated, or exit 2 with the validation message."""
    from absl import app

    from jaxroute.data import DataError, load_data

    if not DATA_PATH.value:
        raise app.UsageError("--data_path is required")
    try:
        return load_data(DATA_PATH.value, DATA_FORMAT.value, drop_incomplete=DROP_INCOMPLETE.value)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


class _QuietLibraries(std_logging.Filter):
    """Below ``--verbosity=1``: drops orbax's own log lines (its save INFO lines and the
    thread tracebacks it logs on a failed save or restore; Checkpointer reports each
    checkpoint error itself, in one line, jaxroute.train.checkpoint) and every other
    library's INFO/DEBUG lines (JAX's "Unable to initialize backend 'tpu'", ...), keeping
    jaxroute's own progress lines and every library's warnings."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if logging.get_verbosity() >= 1:
            return True
        if "orbax" in record.pathname:
            return False
        if record.name == "asyncio" and "exception was never retrieved" in record.msg:
            return False  # the other reads of a checkpoint orbax gave up on (one line above)
        return record.levelno >= std_logging.WARNING or _OWN_DIR in record.pathname


PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]  # the installed jaxroute/
CONFIG_DIR = PACKAGE_DIR / "configs"
FLAGS_DIR = PACKAGE_DIR / "launch" / "flags"  # shipped flagfiles (launch/NAME.flags in docs)
_OWN_DIR = str(PACKAGE_DIR)
_QUIET = _QuietLibraries()
logging.get_absl_handler().addFilter(_QUIET)  # at import: apps that never call start()


def _closed_loop_noise(value) -> bool:
    """When a checkpoint read fails, TensorStore completes the other pending reads on
    an event loop orbax has already closed, and each prints "Event loop is closed"
    (through ``sys.unraisablehook`` or ``sys.excepthook``). Below ``--verbosity=1`` they
    are dropped: Checkpointer reports the failure itself, in one line."""
    return (
        isinstance(value, RuntimeError)
        and str(value) == "Event loop is closed"
        and logging.get_verbosity() < 1
    )


def _quiet_hooks():
    excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

    def quiet_except(kind, value, tb):
        if not _closed_loop_noise(value):
            excepthook(kind, value, tb)

    def quiet_unraisable(u):
        if not _closed_loop_noise(u.exc_value):
            unraisablehook(u)

    sys.excepthook, sys.unraisablehook = quiet_except, quiet_unraisable


_quiet_hooks()

# Exception class (by module and name, looked up only if that module was imported) ->
# exit code. The first match wins, so subclasses come before their bases.
EXIT_BAD_INPUT, EXIT_FAILURE = 2, 1
EXIT_CODES = (
    ("jaxroute.data._types", "DataError", EXIT_BAD_INPUT),  # a reader's one-line message
    ("jaxroute.train._guard", "WorkdirError", EXIT_BAD_INPUT),  # busy, other config/data
    ("jaxroute.train.checkpoint", "CheckpointError", EXIT_FAILURE),  # unreadable, disk full
    ("builtins", "FileNotFoundError", EXIT_BAD_INPUT),  # a path given does not exist
    ("builtins", "ValueError", EXIT_BAD_INPUT),  # config values, flags, prompts files
    ("builtins", "FloatingPointError", EXIT_FAILURE),  # a loss went NaN (names the epoch)
    ("builtins", "OSError", EXIT_FAILURE),  # names the path and the OS reason
)


def exit_code(e: BaseException) -> int | None:
    """The exit code of a known exception class, or None (a bug: show the traceback)."""
    for module, name, code in EXIT_CODES:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(e, cls):
            return code
    return None


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


def _parse_flags(argv):
    """absl's flag parsing, but a bad flag exits 2 (bad input), not 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}\nPass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


# --------------------------------------------------------------- packaged names


def packaged_configs() -> list[str]:
    """Names of the configs shipped in the package (``base``, ``paper``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))


def packaged_flagfiles() -> list[str]:
    """Names of the flagfiles shipped in the package (``equirouter_synthetic``, ...)."""
    return sorted(p.stem for p in FLAGS_DIR.glob("*.flags"))


def resolve_config(spec: str) -> str:
    """``--config`` value → a config file path (``:args`` kept).

    An existing file wins; otherwise ``base``, ``base.py``, ``configs/base.py`` or
    ``jaxroute/configs/base.py`` name the packaged ``jaxroute/configs/base.py``, from any
    working directory.

    >>> resolve_config("base:tiny").endswith("jaxroute/configs/base.py:tiny")
    True
    """
    path, sep, arg = spec.partition(":")
    if os.path.isfile(path):
        return spec
    stem = pathlib.Path(path).name.removesuffix(".py")
    candidate = CONFIG_DIR / f"{stem}.py"
    if stem and candidate.is_file():
        return f"{candidate}{sep}{arg}"
    raise ValueError(
        f"--config={spec}: no file '{path}' and no packaged config '{stem}' "
        f"(packaged: {', '.join(packaged_configs())})"
    )


def resolve_flagfile(name: str) -> str:
    """``--flagfile`` value → a path: an existing file, else the packaged flagfile of that
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


def resolve_argv(argv: list[str]) -> list[str]:
    """``argv`` with every ``--flagfile`` value resolved (:func:`resolve_flagfile`)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith(("--flagfile=", "-flagfile=")):
            key, _, value = arg.partition("=")
            arg = f"{key}={resolve_flagfile(value)}"
        elif arg in ("--flagfile", "-flagfile") and i + 1 < len(argv):
            arg = f"--flagfile={resolve_flagfile(argv[i + 1])}"
            i += 1
        out.append(arg)
        i += 1
    return out


class _PackagedConfigParser(_config_flags_impl.ConfigFileFlagParser):
    """ml_collections' config-file parser, with packaged names (:func:`resolve_config`)."""

    def parse(self, path):
        return super().parse(resolve_config(path))


def define_config(name: str = "config", default: str = "base", help_string: str = ""):
    """A ``--config`` flag (ml_collections config file, locked, ``--config.FIELD=...``
    overrides) that also takes packaged names: ``--config=base:tiny``."""
    # ml_collections reads sys.argv (and its flagfiles) while defining the flag.
    try:
        sys.argv[:] = resolve_argv(sys.argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    holder = config_flags.DEFINE_config_file(
        name,
        str(CONFIG_DIR / f"{default}.py"),
        help_string
        or f"Experiment config: a file or a packaged name ({', '.join(packaged_configs())}), "
        "with ':args' (e.g. base:tiny). Fields: --config_help.",
        lock_config=True,
    )
    flags.FLAGS[name].parser = _PackagedConfigParser(name=name, lock_config=True)
    return holder


# ---------------------------------------------------------------- config fields

# One line for the config fields whose line in the config file has no comment.
FIELD_DOCS = {
    "seeds": "one split + init + batch order per seed",
    "train.epochs": "epochs per router (a router's own epochs win when > 0)",
    "train.batch_size": "prompts per training step",
    "train.learning_rate": "optimiser learning rate (a router's own wins when > 0)",
    "train.weight_decay": "weight decay (adamw)",
    "train.warmup_steps": "linear warm-up steps of the schedule",
    "eval.n_budgets": "budget-grid size (quantiles or log points); also the λ-curve points kept",
    "cost_model.enabled": "False: route with the true costs",
}


def _config_comments() -> dict[str, str]:
    """``field -> comment`` from the ``c.a.b = ...  # comment`` lines of the packaged
    configs; ``rc.x`` lines (router entries) under ``*.x``."""
    import re

    pattern = re.compile(r"^\s*(c|rc)\.([\w.]+)\s*=.*?#\s*(.+)$")
    docs: dict[str, str] = {}
    for path in sorted(CONFIG_DIR.glob("*.py")):
        for line in path.read_text().splitlines():
            m = pattern.match(line)
            if m:
                key = m.group(2) if m.group(1) == "c" else f"*.{m.group(2)}"
                docs.setdefault(key, m.group(3).strip())
    return docs


def config_fields(config) -> list[tuple[str, str, str]]:
    """Every leaf field of ``config`` as ``(dotted name, value, one line)``."""
    docs = _config_comments()

    def doc(key: str) -> str:
        if key in FIELD_DOCS:
            return FIELD_DOCS[key]
        if key in docs:
            return docs[key]
        parts = key.split(".")
        if len(parts) >= 2 and f"*.{parts[-1]}" in docs and "model_kwargs" not in parts:
            return docs[f"*.{parts[-1]}"]
        from jaxroute.models.table import field_doc  # a router kind's own fields

        if "model_kwargs" in parts:
            return field_doc(parts[-1]) or "field of the router's Flax module (jaxroute.models)"
        if "loss_kwargs" in parts:
            return "keyword argument of the router's loss (jaxroute.losses.LOSSES)"
        return field_doc(parts[-1])

    out = []

    def walk(node, prefix):
        for k in node.keys():
            v = node[k]
            key = f"{prefix}{k}"
            if hasattr(v, "keys") and not isinstance(v, str):
                walk(v, key + ".")
            else:
                out.append((key, repr(v), doc(key)))

    walk(config, "")
    return out


def config_help(config) -> str:
    """The text of ``--config_help``: one line per field, ``name = default  # doc``."""
    rows = config_fields(config)
    width = max(len(f"{k} = {v}") for k, v, _ in rows)
    lines = [
        "Config fields (set any with --config.NAME=VALUE; values after --flagfile win):",
        "",
    ]
    lines += [f"  {f'{k} = {v}'.ljust(width)}  # {d}" if d else f"  {k} = {v}" for k, v, d in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------ output


def define_json():
    """The ``--json`` flag of an app whose default output is readable tables (defined
    once per process, however many app modules ask for it)."""
    if "json" in flags.FLAGS:
        return flags.FlagHolder(flags.FLAGS, flags.FLAGS["json"])
    return flags.DEFINE_bool("json", False, "Print one JSON object instead of readable tables.")


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


# ------------------------------------------------------------------------- help


def _help_text(main) -> str:
    """The app's docstring and its own flags (the shared ones included), one per line."""
    module = sys.modules.get(getattr(main, "__module__", "__main__"))
    doc = (getattr(module, "__doc__", None) or "").strip()
    by_module = flags.FLAGS.flags_by_module_dict()
    names = {"__main__", getattr(module, "__name__", ""), sys.argv[0], __name__}
    own = []
    for mod, fl in by_module.items():
        if mod in names or mod.startswith("jaxroute"):
            own += [f for f in fl if f not in own]
    lines = [doc, "", "flags:"]
    for f in sorted(own, key=lambda f: f.name):
        default = f.default_as_str if f.default_as_str is not None else "none"
        if f.name == "config":
            default = "'base'"
        lines.append(f"  --{f.name}: {f.help} (default: {default})")
    lines += [
        f"  --flagfile: a file of flags, or a packaged name ({', '.join(packaged_flagfiles())})",
        "  --verbosity: 1 shows library INFO logs (orbax, JAX) and tracebacks (default: 0)",
        "",
        "--helpfull lists absl's and the libraries' flags too.",
    ]
    return "\n".join(lines)


def run(main):
    """``app.run(main)`` with the exit codes of :data:`EXIT_CODES` (one line each),
    packaged ``--flagfile`` names, and ``--help`` (exit 0) listing the app's own flags."""
    if any(a in ("--help", "-help", "-h", "--helpshort", "-?") for a in sys.argv[1:]):
        print(_help_text(main))
        sys.exit(0)
    try:
        sys.argv[:] = resolve_argv(sys.argv)  # ml_collections re-reads sys.argv
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)

    def wrapped(argv):
        try:
            return main(argv)
        except app.UsageError as e:
            e.exitcode = EXIT_BAD_INPUT
            raise
        except Exception as e:  # noqa: BLE001 - mapped to a code, or re-raised (a bug)
            code = exit_code(e)
            if code is None:
                raise
            logging.debug("traceback of the error below", exc_info=True)
            lines = str(e).splitlines() or [type(e).__name__]
            print(f"error: {lines[0]}", file=sys.stderr)
            sys.exit(code)

    app.run(wrapped, flags_parser=_parse_flags)


def start(config=None):
    """Quiet library chatter, multi-host init when asked, then log the devices."""
    logging.get_absl_handler().addFilter(_QUIET)
    if config is not None and config.devices.distributed:
        from jaxroute.train import _distributed

        _distributed.initialize(COORDINATOR.value, NUM_PROCESSES.value, PROCESS_ID.value)
    logging.info("JAX process %d/%d", jax.process_index(), jax.process_count())
    logging.info("JAX devices: %s", jax.devices())
