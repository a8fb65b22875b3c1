"""The apps run as a user runs them: ``python -m jaxroute.launch.<app>`` in a subprocess.

One helper for every test package (tests/conftest.py puts this folder on sys.path).
"""

import atexit
import json
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

# The suite's persistent compilation cache, for the test processes and every process they
# start. Every program goes in (threshold 0 s, not JAX's 1 s): the eager ops and small
# jitted programs most tests compile take milliseconds each, but there are thousands,
# and a disk read is cheaper (tests/losses/test_battery.py on a warm cache: 45 s with a
# 0.2 s threshold, 16 s with 0). Keys hash the program, compile options, flags and
# versions, so a changed program is compiled afresh, never read stale.
JIT_CACHE_DIR = os.environ.get("JAXROUTE_JIT_CACHE", "/tmp/jaxroute-jit-cache")
JIT_CACHE_MIN_COMPILE_S = "0"

# The suite compiles cheaply: LLVM's optimisation off, and fusions emitted by XLA's
# classic element-wise emitter instead of its MLIR fusion emitters (XLA's graph passes
# still run). On a cold cache most of the suite's CPU is compilation (a tiny train run:
# 38 s CPU optimised, 17 s at level 0, 12 s with both). The programs compute the same
# things; their floating-point results may differ from an optimised build in the last
# bits, so a test must not compare with figures an optimised build printed.
# JAXROUTE_TEST_XLA_OPT=default runs the suite on the product's optimised code;
# =fusion_emitters keeps level 0 but XLA's own emitters (how tests marked
# fusion_emitters run: tests/conftest.py; docs/testing.md).
LEVEL_0 = "--xla_backend_optimization_level=0"
CLASSIC_EMITTER = "--xla_cpu_use_fusion_emitters=false"
_XLA_OPTS = {"": f"{LEVEL_0} {CLASSIC_EMITTER}", "fusion_emitters": LEVEL_0, "default": ""}
_XLA_OPT = os.environ.get("JAXROUTE_TEST_XLA_OPT", "")
if _XLA_OPT not in _XLA_OPTS:
    raise ValueError(f"JAXROUTE_TEST_XLA_OPT={_XLA_OPT!r}: one of default, fusion_emitters")
TEST_XLA_FLAGS = _XLA_OPTS[_XLA_OPT]


def xla_flags(*extra: str) -> str:
    """``XLA_FLAGS`` for a test process or one it starts: the suite's flags plus ``extra``."""
    flags = [f for part in (TEST_XLA_FLAGS, *extra) for f in part.split()]
    return " ".join(dict.fromkeys(flags))  # once each, in order


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


def fake_devices_env(n: int) -> dict[str, str]:
    """The app environment with ``n`` fake CPU devices (its runs still fork)."""
    return dict(app_env(), XLA_FLAGS=xla_flags(f"--xla_force_host_platform_device_count={n}"))


def run_module(module: str, argv, *, cwd=ROOT, env=None, timeout: float = 300):
    """``python -m <module> <argv>`` in ``cwd``: forked from the suite's pre-imported
    interpreter (``tests/_zygote.py``) when ``env`` is the suite's app environment (up to
    ``XLA_FLAGS``), a plain subprocess otherwise. Returns a ``subprocess.CompletedProcess``
    (text output); raises ``subprocess.TimeoutExpired`` after ``timeout`` s, the run
    killed."""
    return run_python(["-m", module, *argv], cwd=cwd, env=env, timeout=timeout)


def run_python(args, *, cwd=ROOT, env=None, timeout: float = 300):
    """``python <args>`` (``-m MODULE ...``, ``-c CODE ...`` or ``PATH ...``) in ``cwd``,
    forked or a plain subprocess as :func:`run_module` says."""
    env = app_env() if env is None else env
    args = [str(a) for a in args]
    if args[0] in ("-m", "-c"):
        job = {{"-m": "module", "-c": "code"}[args[0]]: args[1], "argv": args[2:]}
    elif not args[0].startswith("-"):
        job = {"path": args[0], "argv": args[1:]}
    else:  # an interpreter option: only a real interpreter takes it
        job = None
    if job is not None and forks(env):
        job["env"] = {k: env[k] for k in _AFTER_START if env.get(k) != _Zygote.base_env.get(k)}
        return _zygote().run(job, [sys.executable, *args], str(cwd), timeout)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def run_app(module: str, *args: str, check: bool = False, timeout: float = 300):
    """``jaxroute.launch.<module>`` with ``args`` from the repository root; with ``check``,
    a non-zero exit fails the test with the end of its stderr."""
    proc = run_module(f"jaxroute.launch.{module}", args, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


# --- the pre-imported interpreter (tests/_zygote.py) --------------------------------------
# Variables that differ between tests without changing what an app does.
_PER_TEST = ("PYTEST_CURRENT_TEST",)
# Variables JAX writes into its own process's environment (``import jax`` sets the first
# by setdefault, starting the CPU backend the second). The pre-imported interpreter and
# every app get them the same way, so a run's environment that has them with JAX's
# values is still the app environment (conftest.py freezes it before importing JAX).
_SET_BY_JAX = {"TF_CPP_MIN_LOG_LEVEL": "1", "TPU_SKIP_MDS_QUERY": "1"}
# Variables read only when JAX's backend starts, which the pre-imported interpreter never
# does: a run may set its own (eight fake devices), the forked child sets them first.
_AFTER_START = ("XLA_FLAGS",)


def _comparable(env) -> dict:
    return {
        k: v
        for k, v in env.items()
        if k not in _PER_TEST and k not in _AFTER_START and _SET_BY_JAX.get(k, object()) != v
    }  # fmt: skip


def freeze_app_env() -> None:
    """Fixes the suite's app environment (tests/conftest.py, once its variables are set):
    the one the pre-imported interpreter starts with, whichever test starts it."""
    _Zygote.base_env = app_env()


def app_env_changes() -> list[str]:
    """The names of the variables in which the app environment now differs from the
    frozen one (names only: values may be secrets)."""
    now, frozen = _comparable(app_env()), _comparable(_Zygote.base_env or {})
    return sorted(k for k in set(now) | set(frozen) if now.get(k) != frozen.get(k))


# Set by tests/conftest.py before each test: whether app runs forked then.
forks_before_test = False


def zygote_cpu_s() -> float:
    """User + system CPU of the app runs forked so far (tests/conftest.py's profile)."""
    return _Zygote.cpu_s


def zygote_runs() -> int:
    """How many app runs this test process has forked from tests/_zygote.py."""
    return _Zygote.runs


def forks(env=None) -> bool:
    """Whether :func:`run_module` forks a run in ``env`` (default: the app environment)
    from tests/_zygote.py rather than starting a plain subprocess."""
    env = app_env() if env is None else env
    base = _Zygote.base_env
    if base is None or os.environ.get("JAXROUTE_TEST_ZYGOTE", "1") == "0":
        return False
    if any(k in base and k not in env for k in _AFTER_START):  # a child can only set them
        return False
    return _comparable(env) == _comparable(base)


def _zygote() -> "_Zygote":
    if _Zygote.instance is None:
        _Zygote.instance = _Zygote(_Zygote.base_env)
    return _Zygote.instance


class _Zygote:
    """This test process's ``tests/_zygote.py``: started on the first app run, in the app
    environment :func:`freeze_app_env` fixed; stopped (stdin closed, then waited for) at
    exit."""

    instance = None
    base_env = None  # freeze_app_env()
    cpu_s = 0.0
    runs = 0

    def __init__(self, env: dict):
        self.lock = threading.Lock()
        self.dir = tempfile.mkdtemp(prefix="jaxroute-zygote-")
        self.proc = subprocess.Popen(
            [sys.executable, str(pathlib.Path(__file__).with_name("_zygote.py"))],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
        )  # fmt: skip
        self.pending = b""  # replies read from the pipe but not yet returned
        self._reply(timeout=120)  # {"ready": pid}: imports done
        atexit.register(self.close)

    def _reply(self, timeout: float) -> dict:
        """The next JSON line. Reads the pipe itself (no buffered reader, which could take
        two replies at once and leave ``select`` waiting on an empty pipe)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise subprocess.TimeoutExpired("tests/_zygote.py", timeout)
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"tests/_zygote.py exited ({self.proc.wait()})")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def run(self, job: dict, cmd: list, cwd: str, timeout: float):
        """``job``: ``{"module" | "code" | "path": ..., "argv": [...], "env": {...}}``;
        ``cmd``: the command line it stands for (in the result and errors)."""
        with self.lock:
            if not os.path.isdir(cwd):  # as subprocess.run would fail
                raise FileNotFoundError(f"no such directory: {cwd}")
            out, err = (os.path.join(self.dir, n) for n in ("stdout", "stderr"))
            for path in (out, err):  # never a previous run's output
                pathlib.Path(path).unlink(missing_ok=True)
            request = {**job, "cwd": cwd, "stdout": out, "stderr": err}
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            pid = self._reply(timeout=30)["pid"]
            try:
                done = self._reply(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)  # not yet reaped: the zygote waits for it
                _Zygote.cpu_s += self._reply(timeout=30)["cpu_s"]
                raise subprocess.TimeoutExpired(cmd, timeout) from None
            _Zygote.cpu_s += done["cpu_s"]
            _Zygote.runs += 1
            read = lambda path: pathlib.Path(path).read_text(errors="replace")  # noqa: E731
            return subprocess.CompletedProcess(cmd, done["returncode"], read(out), read(err))

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
