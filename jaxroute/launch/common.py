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
import sys

import jax
from absl import app, flags, logging

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
    """Drops orbax's own log lines below ``--verbosity=1``: its save INFO lines and the
    thread tracebacks it logs on a failed save or restore. Checkpointer reports each
    checkpoint error itself, in one line (jaxroute.train.checkpoint)."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return "orbax" not in record.pathname or logging.get_verbosity() >= 1


_QUIET = _QuietLibraries()
logging.get_absl_handler().addFilter(_QUIET)  # at import: apps that never call start()

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


def run(main):
    """``app.run(main)`` with the exit codes of :data:`EXIT_CODES` (one line each)."""

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
