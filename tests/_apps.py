"""The apps run as a user runs them: ``python -m jaxroute.launch.<app>`` in a subprocess.

One helper for every test package (tests/conftest.py puts this folder on sys.path).
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The suite's persistent compilation cache, for the test processes and every process they
# start. Every program goes in (threshold 0 s, not JAX's 1 s): the eager ops and small
# jitted programs most tests compile take milliseconds each, but there are thousands,
# and a disk read is cheaper (tests/losses/test_battery.py on a warm cache: 45 s with a
# 0.2 s threshold, 16 s with 0). Keys hash the program, compile options, flags and
# versions, so a changed program is compiled afresh, never read stale.
JIT_CACHE_DIR = os.environ.get("JAXROUTE_JIT_CACHE", "/tmp/jaxroute-jit-cache")
JIT_CACHE_MIN_COMPILE_S = "0"


def jit_cache_env() -> dict[str, str]:
    """The environment variables that give a started JAX process the suite's cache."""
    return {
        "JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR", JIT_CACHE_DIR),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": os.environ.get(
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", JIT_CACHE_MIN_COMPILE_S
        ),
    }


def app_env() -> dict[str, str]:
    """CPU only, this checkout's jaxroute, and the suite's persistent compilation cache
    (a second train, evaluate or route reuses the first one's programs; safe across xdist
    workers)."""
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), **jit_cache_env())


def run_app(module: str, *args: str, check: bool = False, timeout: float = 300):
    """``jaxroute.launch.<module>`` with ``args`` from the repository root; with ``check``,
    a non-zero exit fails the test with the end of its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", f"jaxroute.launch.{module}", *args],
        cwd=ROOT,
        env=app_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc
