"""A pre-imported interpreter that forks the apps the tests run (docs/testing.md).

``python -m jaxroute.launch.APP`` spends about 2.5 s of CPU importing JAX, jaxroute,
matplotlib and pandas before it reads a flag, and the suite starts dozens of such runs.
This process imports those libraries once (no JAX backend is started, so no JAX thread
exists yet) and then, per request, forks: the child takes the request's working
directory, standard streams and argv, and runs the app module as ``__main__`` exactly as
``-m`` does. It ends as an interpreter does (its exit status from ``sys.exit`` or an
uncaught exception with its traceback, non-daemon threads joined, atexit handlers run,
standard streams flushed) but skips the teardown of the modules it inherited: in a
forked child that costs about 0.6 s of CPU (the collector touches every object of the
parent's heap) and writes nothing. The app modules themselves are never imported here,
so each child defines its app's flags afresh. The environment is the one this process
was started with; ``tests/_apps.py`` sends a request here only when a run's environment
is that one, and starts a plain subprocess otherwise.

Besides a module (``python -m``), a request may run code (``python -c``) or a script
(``python PATH``), and may set variables that nothing here reads, only the run itself
(``tests/_apps.py``: ``_READ_AT_RUN``; ``XLA_FLAGS``, read once JAX's backend starts,
which never happens here: eight fake devices and the like); the child sets them before
running.

Several children may run at once (a server, two processes of one multi-process run):
this process forks each request at once and reaps children as they exit. A request may
ask for a new session (``setsid``, as ``start_new_session``) and the CPUs it runs on, and
its ``stderr`` may be its ``stdout`` file. When stdin closes, children still running are
killed and reaped.

Protocol, one JSON line each way: ``{"module" | "code" | "path", "argv", "cwd", "stdout",
"stderr", "env", "session", "cpus"}`` in; ``{"pid"}`` once forked (in request order), then
``{"pid", "returncode", "cpu_s"}`` once that child has exited (``cpu_s``: its user +
system CPU, for the suite's CPU profile).
"""

import atexit
import json
import os
import runpy
import select
import signal
import sys
import threading
import types

# What every app imports anyway (`python -X importtime -m jaxroute.launch.train`).
import absl.flags  # noqa: F401
import jax  # noqa: F401
import matplotlib  # noqa: F401
import numpy  # noqa: F401
import pandas  # noqa: F401

import jaxroute.launch.app  # noqa: F401
import jaxroute.report  # noqa: F401
import jaxroute.serving  # noqa: F401
import jaxroute.train  # noqa: F401


def _reply(message: dict) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def _reap(children: set) -> None:
    """Replies for every child that has exited (without blocking)."""
    for pid in sorted(children):
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            cpu = usage.ru_utime + usage.ru_stime  # its own children's included
            _reply({"pid": pid, "returncode": code, "cpu_s": cpu})


def _serve() -> dict:
    """Answers requests until stdin closes, then ends its children and exits; returns
    only in a forked child, its request."""
    wake_r, wake_w = os.pipe()  # SIGCHLD writes here, so select() wakes when a child ends
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children, pending, open_ = set(), b"", True
    _reply({"ready": os.getpid()})
    while open_:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            while True:
                try:
                    os.read(wake_r, 4096)
                except BlockingIOError:
                    break
        if 0 in ready:
            chunk = os.read(0, 65536)
            open_ = bool(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_r)
                    os.close(wake_w)
                    return request
                children.add(pid)
                _reply({"pid": pid})
        _reap(children)
    for pid in children:  # stdin closed: the test process is done with them
        os.kill(pid, signal.SIGKILL)
    for pid in sorted(children):
        os.waitpid(pid, 0)
    sys.exit(0)


def _become(request: dict) -> None:
    """The child: the request's directory, streams and argv, as ``python -m`` sets them."""
    if request.get("session"):
        os.setsid()
    if request.get("cpus"):  # before any thread starts: each inherits it
        os.sched_setaffinity(0, request["cpus"])
    write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    out = os.open(request["stdout"], write, 0o644)  # first, so that even a failing chdir
    same = request["stderr"] == request["stdout"]  # reports in the run's own stderr
    err = os.dup(out) if same else os.open(request["stderr"], write, 0o644)
    for target, fd in enumerate([os.open(os.devnull, os.O_RDONLY), out, err]):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.update(request.get("env", {}))
    here = os.path.dirname(os.path.abspath(__file__))
    # sys.path[0] and argv as `python -m MODULE`, `python -c CODE` and `python PATH` set them.
    if "module" in request:
        first, argv0 = os.getcwd(), request["module"]
    elif "code" in request:
        first, argv0 = "", "-c"
    else:
        first, argv0 = os.path.dirname(os.path.realpath(request["path"])), request["path"]
    sys.path[:] = [first] + [p for p in sys.path if p != here]
    sys.argv = [argv0, *request["argv"]]


def _run(request: dict) -> None:
    if "module" in request:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    elif "path" in request:
        runpy.run_path(request["path"], run_name="__main__")
    else:
        main = types.ModuleType("__main__")
        sys.modules["__main__"] = main
        exec(compile(request["code"], "<string>", "exec"), main.__dict__)


def _exit_status(code) -> int:
    """The exit status ``sys.exit(code)`` gives an interpreter."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _finish(status: int) -> None:
    """Ends the child as Python's shutdown does, up to the module teardown (skipped)."""
    threading._shutdown()  # joins the non-daemon threads, as the interpreter does first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 120  # as the interpreter does when flushing fails
    os._exit(status)


if __name__ == "__main__":
    job = _serve()
    _become(job)
    try:
        _run(job)
        status = 0
    except SystemExit as e:
        status = _exit_status(e.code)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        status = 1
    _finish(status)
