"""The suite's app harness (tests/_apps.py): app runs really are forked, and a forked run
prints what a plain ``python -m`` run prints (docs/testing.md)."""

import os
import signal
import subprocess
import sys
import time

import _apps
import jax
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("JAXROUTE_TEST_ZYGOTE") == "0", reason="JAXROUTE_TEST_ZYGOTE=0: no forks"
)


def test_the_app_environment_survives_jax_starting():
    # conftest.py froze the app environment before importing JAX; JAX then wrote its own
    # variables into os.environ. A run in the app environment must still be forked.
    jax.devices()  # the backend started: every variable JAX sets is set
    assert _apps.forks(), _apps.app_env_changes()
    assert not _apps.forks(dict(_apps.app_env(), JAXROUTE_SOMETHING_ELSE="1"))
    assert not _apps.forks(dict(_apps.app_env(), TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.slow
def test_a_forked_run_prints_what_a_plain_run_prints():
    argv = ["-m", "jaxroute.launch.inspect_data", "--data_path=synthetic:n_prompts=50"]
    before = _apps.zygote_runs()
    forked = _apps.run_module(argv[1], argv[2:])
    assert _apps.zygote_runs() == before + 1
    plain = subprocess.run(
        [sys.executable, *argv], cwd=_apps.ROOT, env=_apps.app_env(),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plain.returncode == 0 and plain.stdout.startswith("50 prompts,"), plain.stderr[-2000:]
    assert (forked.returncode, forked.stdout) == (0, plain.stdout)


@pytest.mark.slow
def test_code_and_xla_flags_reach_a_forked_run_and_stop_there():
    # XLA_FLAGS is read when the backend starts: a forked run may bring its own.
    three = _apps.fake_devices_env(3)
    code = ["-c", "import jax, sys; print(len(jax.devices()), sys.argv[1:])", "a", "b"]
    before = _apps.zygote_runs()
    assert _apps.run_python(code, env=three).stdout == "3 ['a', 'b']\n"
    assert _apps.run_python(code).stdout == "1 ['a', 'b']\n"  # the next fork: the suite's
    assert _apps.zygote_runs() == before + 2


@pytest.mark.slow
def test_runs_that_end_at_once_return_at_once_with_their_own_output(tmp_path):
    # The pid and the exit status may then arrive together; each run must still see its
    # own exit, promptly (a buffered reader could take both lines and leave select()
    # waiting for the timeout; that race is timing-dependent, and this loop only makes it
    # likely). A missing directory must fail as subprocess.run fails, not return the
    # previous run's output (that part failed before the fix).
    for i in range(20):
        code = ["-c", f"import sys; print({i}); sys.exit({i % 4})"]
        proc = _apps.run_python(code, timeout=20)
        assert (proc.returncode, proc.stdout) == (i % 4, f"{i}\n")
    with pytest.raises(FileNotFoundError):  # as subprocess.run: no previous run's output
        _apps.run_python(["-c", "print(1)"], cwd=tmp_path / "missing")


EXIT_CODE = """
import atexit, sys, threading, time
atexit.register(lambda: print("atexit ran", flush=True))
threading.Thread(target=lambda: (time.sleep(0.2), print("thread joined"))).start()
print("main")
if sys.argv[1] == "raise":
    raise ValueError("boom")
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["0", "3", "a message", "raise"])
def test_a_forked_run_ends_as_a_plain_one(how):
    # Exit status, stderr's last line, threads joined before atexit, buffered output kept.
    args = ["-c", EXIT_CODE, how]
    forked = _apps.run_python(args)
    plain = subprocess.run(
        [sys.executable, *args], cwd=_apps.ROOT, env=_apps.app_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert plain.stdout == "main\nthread joined\natexit ran\n"
    assert (forked.returncode, forked.stdout) == (plain.returncode, plain.stdout)
    last = plain.stderr.strip().splitlines()[-1:] if plain.stderr.strip() else []
    assert forked.stderr.strip().splitlines()[-1:] == last, forked.stderr


SERVE_LIKE = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (print("draining", flush=True), sys.exit(7)))
print("up", os.getpid(), os.getpgid(0), os.environ.get("JAX_PROCESS_ID"), flush=True)
print(*sorted(os.sched_getaffinity(0)), flush=True)
print("to stderr", file=sys.stderr, flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_background_runs_overlap_take_signals_and_their_own_session(tmp_path):
    # Servers and the processes of one multi-process run are started in the background:
    # forked too (a run-time variable of their own), two at once, stopped by a signal.
    runs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        env = dict(_apps.app_env(), JAX_PROCESS_ID=str(i))
        runs.append((out, _apps.start_python(
            ["-c", SERVE_LIKE], env=env, stdout=out, stderr=subprocess.STDOUT, new_session=i == 1,
            cpus=_apps.ALL_CPUS if i == 1 else None,
        )))  # fmt: skip
    for out, proc in runs:
        assert isinstance(proc, _apps.ForkedProcess)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (out.exists() and "to stderr" in out.read_text()):
            time.sleep(0.02)
    assert all(proc.poll() is None for _, proc in runs)  # both still running
    (first, a), (second, b) = runs
    with pytest.raises(subprocess.TimeoutExpired):
        a.wait(0.05)
    b.terminate()
    assert b.wait(30) == 7 and a.poll() is None  # one stopped, the other not
    a.kill()
    assert a.wait(30) == -signal.SIGKILL
    up = [out.read_text().splitlines()[0].split() for out, _ in runs]
    assert up[0][1:] == [str(a.pid), str(os.getpgid(0)), "0"]  # the suite's process group
    assert up[1][1:] == [str(b.pid), str(b.pid), "1"]  # its own session
    cpus = [out.read_text().splitlines()[1].split() for out, _ in runs]
    assert cpus[0] == [str(c) for c in sorted(os.sched_getaffinity(0))]  # this thread's
    assert cpus[1] == [str(c) for c in sorted(_apps.ALL_CPUS)]  # the ones asked for
    assert second.read_text().splitlines()[2:] == ["to stderr", "draining"]
    b.kill()  # after the exit: no signal to a reaped pid


PIN = """
import os, sys
os.sched_setaffinity(0, map(int, sys.argv[1:]))  # the CPUs the suite started with
import _apps
_apps.pin_xdist_worker()
print(*sorted(os.sched_getaffinity(0)))
"""


@pytest.mark.parametrize("worker,pin", [("gw0", "1"), ("gw1", "1"), ("", "1"), ("gw1", "0")])
def test_an_xdist_worker_is_pinned_to_one_cpu(worker, pin):
    cpus = sorted(_apps.ALL_CPUS)
    env = dict(os.environ, PYTHONPATH=str(_apps.ROOT / "tests"), JAXROUTE_TEST_PIN=pin)
    env["PYTEST_XDIST_WORKER"] = worker
    proc = subprocess.run(
        [sys.executable, "-c", PIN, *map(str, cpus)], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    n = int(worker.removeprefix("gw")) if worker else None
    want = cpus if n is None or pin == "0" else [cpus[n % len(cpus)]]
    assert proc.stdout.split() == [str(c) for c in want], proc.stderr
