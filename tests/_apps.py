"""The apps run as a user runs them: ``python -m jaxroute.launch.<app>`` in a subprocess.

One helper for every test package (tests/conftest.py puts this folder on sys.path).
"""

import atexit
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

# One core per xdist worker. XLA sizes its CPU thread pools by the CPUs a process may
# run on; with two workers on two cores, each worker's pools (and its app runs') spin and
# migrate across both cores. Pinned, each worker and every process it starts stays on
# its own core (tests in tests/models, tests/losses and tests/train, two workers, warm
# cache: 140 and 135 s CPU unpinned, 125 and 121 s pinned; docs/testing.md). Runs whose
# processes work together (a server under load, two processes of one multi-process run)
# take every CPU back: ALL_CPUS, :func:`on_cpus`, ``start_python(cpus=...)``.
# JAXROUTE_TEST_PIN=0 leaves workers unpinned.
ALL_CPUS = frozenset(os.sched_getaffinity(0))


def pin_xdist_worker() -> None:
    """Pins this process, if it is xdist worker ``gwN`` and pinning is on, to the N-th
    of its CPUs (modulo their number); threads and processes started later inherit it.
    Call before importing JAX."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or os.environ.get("JAXROUTE_TEST_PIN", "1") == "0":
        return
    cpus = sorted(ALL_CPUS)
    os.sched_setaffinity(0, {cpus[int(worker.removeprefix("gw")) % len(cpus)]})


@contextlib.contextmanager
def on_cpus(cpus):
    """The calling thread runs on ``cpus`` inside the block (then as before)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


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


def _job(args: list[str], env: dict) -> dict | None:
    """The request that forks ``python <args>`` in ``env``; None where only a plain
    subprocess can run it (an interpreter option, or an environment the fork cannot set)."""
    if args[0] in ("-m", "-c"):
        job = {{"-m": "module", "-c": "code"}[args[0]]: args[1], "argv": args[2:]}
    elif not args[0].startswith("-"):
        job = {"path": args[0], "argv": args[1:]}
    else:  # an interpreter option: only a real interpreter takes it
        return None
    if not forks(env):
        return None
    job["env"] = {k: env[k] for k in _READ_AT_RUN if env.get(k) != _Zygote.base_env.get(k)}
    return job


def run_python(args, *, cwd=ROOT, env=None, timeout: float = 300):
    """``python <args>`` (``-m MODULE ...``, ``-c CODE ...`` or ``PATH ...``) in ``cwd``,
    forked or a plain subprocess as :func:`run_module` says."""
    env = app_env() if env is None else env
    args = [str(a) for a in args]
    job = _job(args, env)
    if job is not None:
        return _zygote().run(job, [sys.executable, *args], str(cwd), timeout)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def start_python(args, *, stdout, stderr, cwd=ROOT, env=None, new_session=False, cpus=None):
    """``python <args>`` started in the background, its output written to the files
    ``stdout`` and ``stderr`` (``subprocess.STDOUT``: both to ``stdout``); forked as
    :func:`run_module` says. Returns a ``subprocess.Popen`` or, forked, a
    :class:`ForkedProcess` (``pid``, ``poll``, ``wait``, ``send_signal``, ``terminate``,
    ``kill``, ``returncode``). ``new_session``: as ``start_new_session``; ``cpus``: the
    CPUs it and the threads it starts run on (default: this thread's)."""
    env = app_env() if env is None else env
    args = [str(a) for a in args]
    stdout = os.fspath(stdout)
    stderr = stdout if stderr == subprocess.STDOUT else os.fspath(stderr)
    cpus = sorted(cpus or os.sched_getaffinity(0))
    job = _job(args, env)
    if job is not None:
        job.update(stdout=stdout, stderr=stderr, session=new_session, cpus=cpus)
        return _zygote().start(job, [sys.executable, *args], str(cwd))
    same = contextlib.nullcontext(subprocess.STDOUT)
    with (
        open(stdout, "w") as out,
        same if stderr == stdout else open(stderr, "w") as err,
        on_cpus(cpus),  # the child inherits this thread's
    ):
        return subprocess.Popen(
            [sys.executable, *args], cwd=cwd, env=env, stdout=out, stderr=err,
            start_new_session=new_session,
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
# Variables nothing reads before an app runs (the pre-imported interpreter only imports):
# a run may bring its own values, which the forked child sets first. XLA_FLAGS is read
# when JAX's backend starts (eight fake devices); the coordinator's are read by
# jax.distributed.initialize (tests/distributed); the stub backend's key by the server
# when it calls a backend (tests/serving).
_READ_AT_RUN = (
    "XLA_FLAGS",
    "JAX_COORDINATOR_ADDRESS",
    "JAX_COORDINATOR_BIND_ADDRESS",
    "JAX_NUM_PROCESSES",
    "JAX_PROCESS_ID",
    "JAXROUTE_TEST_KEY",
)


def _comparable(env) -> dict:
    return {
        k: v
        for k, v in env.items()
        if k not in _PER_TEST and k not in _READ_AT_RUN and _SET_BY_JAX.get(k, object()) != v
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
    if any(k in base and k not in env for k in _READ_AT_RUN):  # a child can only set them
        return False
    return _comparable(env) == _comparable(base)


def _zygote() -> "_Zygote":
    with _Zygote.starting:
        if _Zygote.instance is None:
            _Zygote.instance = _Zygote(_Zygote.base_env)
    return _Zygote.instance


class ForkedProcess:
    """A background run forked by tests/_zygote.py, with the ``subprocess.Popen`` methods
    the tests use. It is the pre-imported interpreter's child, not this process's: its
    exit arrives as that interpreter's reply."""

    def __init__(self, zygote: "_Zygote", pid: int, args: list):
        self.zygote, self.pid, self.args, self.returncode = zygote, pid, args, None

    def poll(self):
        done = self.zygote.exited(self.pid, timeout=0)
        if done is not None:
            self.returncode = done["returncode"]
        return self.returncode

    def wait(self, timeout=None):
        done = self.zygote.exited(self.pid, timeout)
        if done is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        self.returncode = done["returncode"]
        return self.returncode

    def send_signal(self, sig) -> None:
        if self.poll() is None:  # never a signal to a reaped pid (it may be reused)
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Zygote:
    """This test process's ``tests/_zygote.py``: started on the first app run, in the app
    environment :func:`freeze_app_env` fixed; stopped (stdin closed, then waited for) at
    exit. A reader thread takes its replies: the pids of forked runs, in request order,
    and the exits, by pid."""

    instance = None
    starting = threading.Lock()
    base_env = None  # freeze_app_env()
    cpu_s = 0.0
    runs = 0

    def __init__(self, env: dict):
        self.sending = threading.Lock()  # one request at a time: pids come back in order
        self.replies = threading.Condition()
        self.forked, self.done, self.closed = [], {}, False
        self.dir = tempfile.mkdtemp(prefix="jaxroute-zygote-")
        self.proc = subprocess.Popen(
            [sys.executable, str(pathlib.Path(__file__).with_name("_zygote.py"))],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        ready = self.proc.stdout.readline()  # {"ready": pid}: imports done
        if not ready:
            raise RuntimeError(f"tests/_zygote.py exited ({self.proc.wait()})")
        threading.Thread(target=self._read, name="zygote-replies", daemon=True).start()
        atexit.register(self.close)

    def _read(self) -> None:
        for line in self.proc.stdout:
            reply = json.loads(line)
            with self.replies:
                if "returncode" in reply:
                    self.done[reply["pid"]] = reply
                    _Zygote.cpu_s += reply["cpu_s"]
                else:
                    self.forked.append(reply["pid"])
                self.replies.notify_all()
        with self.replies:
            self.closed = True
            self.replies.notify_all()

    def _await(self, ready, timeout):
        """``ready()``'s value once it is not None (waiting up to ``timeout`` s; None:
        forever); None after the timeout. Raises if the pre-imported interpreter died."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.replies:
            while (value := ready()) is None:
                left = None if deadline is None else deadline - time.monotonic()
                if self.closed:
                    raise RuntimeError(f"tests/_zygote.py exited ({self.proc.wait()})")
                if left is not None and left <= 0:
                    return None
                self.replies.wait(left)
            return value

    def _fork(self, job: dict, cwd: str) -> int:
        if not os.path.isdir(cwd):  # as subprocess would fail
            raise FileNotFoundError(f"no such directory: {cwd}")
        with self.sending:
            self.proc.stdin.write((json.dumps({**job, "cwd": cwd}) + "\n").encode())
            self.proc.stdin.flush()
            pid = self._await(lambda: self.forked.pop(0) if self.forked else None, 30)
        if pid is None:
            raise RuntimeError("tests/_zygote.py did not fork within 30 s")
        _Zygote.runs += 1
        return pid

    def exited(self, pid: int, timeout):
        """The exit reply of child ``pid`` (waiting up to ``timeout`` s); None if none."""
        return self._await(lambda: self.done.get(pid), timeout)

    def start(self, job: dict, cmd: list, cwd: str) -> ForkedProcess:
        return ForkedProcess(self, self._fork(job, cwd), cmd)

    def run(self, job: dict, cmd: list, cwd: str, timeout: float):
        """``job``: ``{"module" | "code" | "path": ..., "argv": [...], "env": {...}}``;
        ``cmd``: the command line it stands for (in the result and errors)."""
        out_dir = tempfile.mkdtemp(dir=self.dir)  # its own files: runs may overlap
        out, err = (os.path.join(out_dir, n) for n in ("stdout", "stderr"))
        try:
            proc = self.start({**job, "stdout": out, "stderr": err}, cmd, cwd)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
                raise subprocess.TimeoutExpired(cmd, timeout) from None
            read = lambda path: pathlib.Path(path).read_text(errors="replace")  # noqa: E731
            return subprocess.CompletedProcess(cmd, proc.returncode, read(out), read(err))
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
