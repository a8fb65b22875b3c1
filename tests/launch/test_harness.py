"""The suite's app harness (tests/_apps.py): app runs really are forked, and a forked run
prints what a plain ``python -m`` run prints (docs/testing.md)."""

import os
import subprocess
import sys

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
