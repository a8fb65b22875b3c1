"""The app runner: start-up, ``--help``, flag parsing and exit codes (each app stays thin).

Exit codes (docs/reliability.md): every app runs through :func:`run`, which maps the
exception classes of :data:`EXIT_CODES` to one ``error: ...`` line on stderr and a code:
2 for bad input (data, config, flags, a workdir that belongs to another run or is in
use), 1 for failures of the run itself (checkpoint or OS errors such as a full disk, a
diverged loss). The full traceback is logged at ``--verbosity=1``. Any other exception
is a bug: absl prints its traceback and exits 1.

Nothing here changes the process when imported: :func:`run` installs the log filter and
the hooks that quiet library noise (:func:`quiet_libraries`) when an app starts.
"""

from __future__ import annotations

import logging as std_logging
import pathlib
import sys

import jax
from absl import app, flags, logging

from jaxroute.launch import config_flag, data_flags, packaged
from jaxroute.train import _distributed

_OWN_DIR = str(pathlib.Path(__file__).resolve().parents[1])  # the installed jaxroute/


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


_QUIET = _QuietLibraries()


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


def quiet_libraries() -> None:
    """Installs :data:`_QUIET` on absl's log handler and wraps ``sys.excepthook`` and
    ``sys.unraisablehook`` to drop the closed-event-loop noise (once per process)."""
    logging.get_absl_handler().addFilter(_QUIET)  # a second add is a no-op
    if getattr(sys.excepthook, "_jaxroute_quiet", False):
        return
    excepthook, unraisablehook = sys.excepthook, sys.unraisablehook

    def quiet_except(kind, value, tb):
        if not _closed_loop_noise(value):
            excepthook(kind, value, tb)

    def quiet_unraisable(u):
        if not _closed_loop_noise(u.exc_value):
            unraisablehook(u)

    quiet_except._jaxroute_quiet = True
    sys.excepthook, sys.unraisablehook = quiet_except, quiet_unraisable


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


def _bad_input(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def _parse_flags(argv):
    """absl's flag parsing, but a bad flag exits 2 (bad input), not 1."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _bad_input(f"{e}\nPass --helpshort or --helpfull to see help on flags.")


def _help_text(main) -> str:
    """The app's docstring and its own flags (the shared ones included), one per line."""
    module = sys.modules.get(getattr(main, "__module__", "__main__"))
    doc = (getattr(module, "__doc__", None) or "").strip()
    by_module = flags.FLAGS.flags_by_module_dict()
    names = {"__main__", getattr(module, "__name__", ""), sys.argv[0]}
    own = []
    for mod, fl in by_module.items():
        if mod in names or mod.startswith("jaxroute"):
            own += [f for f in fl if f not in own]
    lines = [doc, "", "flags:"]
    for f in sorted(own, key=lambda f: f.name):
        default = f.default_as_str if f.default_as_str is not None else "none"
        lines.append(f"  --{f.name}: {f.help} (default: {default})")
    if "config" in flags.FLAGS:
        lines.append(
            "  --config.FIELD=VALUE: set a config field (the last value given replaces the "
            "whole field; new routers: --config.routers.NAME.model=KIND); --config_help "
            "lists the fields"
        )
    flagfiles = ", ".join(packaged.packaged_flagfiles())
    lines += [
        f"  --flagfile: a file of flags, or a packaged name ({flagfiles}); flags after it "
        "replace its values",
        "  --verbosity: 1 shows library INFO logs (orbax, JAX) and tracebacks (default: 0)",
        "",
        "--helpfull lists absl's and the libraries' flags too.",
    ]
    return "\n".join(lines)


def _command_line(argv: list[str]) -> list[str]:
    """``argv`` with the flagfiles expanded and the config overrides taken out."""
    try:
        args = packaged.expand_flagfiles(argv[1:])
        return [argv[0], *config_flag.take_overrides(args)]
    except ValueError as e:
        _bad_input(str(e).splitlines()[0])


def run(main):
    """``app.run(main)`` with the exit codes of :data:`EXIT_CODES` (one line each),
    expanded ``--flagfile`` (packaged names too), ``--config.FIELD`` overrides, and
    ``--help`` (exit 0) listing the app's own flags."""
    if any(a in ("--help", "-help", "-h", "--helpshort", "-?") for a in sys.argv[1:]):
        print(_help_text(main))
        sys.exit(0)
    quiet_libraries()
    sys.argv[:] = _command_line(sys.argv)

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
    """Multi-host init when the config asks for it, then log the devices."""
    quiet_libraries()
    if config is not None and config.devices.distributed:
        _distributed.initialize(
            data_flags.COORDINATOR.value,
            data_flags.NUM_PROCESSES.value,
            data_flags.PROCESS_ID.value,
        )
    logging.info("JAX process %d/%d", jax.process_index(), jax.process_count())
    logging.info("JAX devices: %s", jax.devices())
