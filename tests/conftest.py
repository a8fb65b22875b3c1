"""Strict JAX for every test (docs/design.md); the suite's compilation cache; xdist groups."""

import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

os.environ.setdefault("JAXROUTE_TINY", "1")
# Cache bytecode for the checkout's modules even under PYTHONDONTWRITEBYTECODE: every
# process the suite starts (about 50) then reads jaxroute compiled instead of compiling
# its sources again (about 0.25 s CPU each). The environment is left as it is.
sys.dont_write_bytecode = False

import _apps  # noqa: E402
from _apps import JIT_CACHE_DIR, JIT_CACHE_MIN_COMPILE_S, xla_flags  # noqa: E402

_apps.pin_xdist_worker()  # one core per worker, before JAX sizes its thread pools

# Before JAX starts: read once, and inherited by every process a test starts. The user's
# own flags are kept aside (xdist workers inherit the controller's XLA_FLAGS, the suite's
# flags already in).
_USER_XLA_FLAGS = os.environ.setdefault("JAXROUTE_USER_XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
os.environ["XLA_FLAGS"] = xla_flags(_USER_XLA_FLAGS)
_apps.freeze_app_env()  # the environment app runs are forked in (tests/_zygote.py)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# Many tests compile the same tiny programs in fresh Task objects: a persistent cache
# keyed by the program text makes the second compile a disk read (tests/_apps.py).
jax.config.update("jax_compilation_cache_dir", JIT_CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", float(JIT_CACHE_MIN_COMPILE_S))


def pytest_collection_modifyitems(config, items):
    """``--dist loadgroup``: tests marked ``xdist_group(NAME)`` run on one worker.

    pytest-xdist tells its scheduler a test's group by appending ``@NAME`` to the test's
    ``_nodeid``; pytest 9.2 keeps the node id in a structured ``_id`` and ignores that
    field (pytest-dev/pytest-xdist#1386), so the groups were silently spread over both
    workers (each ran its own session fixtures: a second trained workdir and server).
    Here the suffix goes into the id pytest reads; nothing happens where xdist's own
    suffix took effect, outside loadgroup workers, or on a pytest without ``_id``.
    """
    for item in items:  # one worker runs them, in one child pytest (below)
        if item.get_closest_marker("fusion_emitters"):
            item.add_marker(pytest.mark.xdist_group("fusion_emitters"))
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # an older pytest: xdist's own suffix works there
        return
    for item in items:
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
             for m in item.iter_markers("xdist_group")}
        )  # fmt: skip
        suffix = "@" + "_".join(names)
        if names and isinstance(getattr(item, "_id", None), NodeId):
            if not item.nodeid.endswith(suffix):
                item._id = NodeId.parse(item.nodeid + suffix)


# --- the app environment stays the suite's ----------------------------------------------
# App runs are forked only while os.environ is the frozen app environment (tests/_apps.py);
# a test that leaves a variable behind would silently turn every later fork of its worker
# into a plain subprocess. Such a test errors in its teardown, naming the variables.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    if _apps.forks_before_test and not _apps.forks():
        _apps.forks_before_test = False  # once: the tests after it are not to blame
        changed = _apps.app_env_changes()
        raise AssertionError(f"{item.nodeid} (or a fixture it uses) changed os.environ: {changed}")
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _apps.forks_before_test = _apps.forks()


# --- claims that need XLA's fusion emitters ---------------------------------------------
# A test marked ``fusion_emitters`` asserts that two differently built programs agree to
# the last bits (K routers in CPU lanes against K separate runs). That holds for code
# compiled by XLA's own emitters (the product's, optimised or not), not for the suite's
# classic emitter at level 0 (tests/_apps.py: TEST_XLA_FLAGS). Where that emitter is on,
# the marked tests of this process run in one child pytest at level 0 with XLA's own
# emitters (JAXROUTE_TEST_XLA_OPT=fusion_emitters, the suite's cache), and each takes its
# outcome from the child's report (docs/testing.md).
_child_outcomes: dict[str, tuple[str, str] | None] = {}  # None: passed


def _child_ids(item) -> tuple[str, tuple[str, str]]:
    """The test's node id for the child pytest (without xdist's ``@group`` suffix) and its
    (classname, name) in pytest's JUnit report: ``a/b.py::C::t[x]`` is ``("a.b.C", "t[x]")``.
    Built from the item, not by splitting its node id (parameters may hold ``::`` or ``@``)."""
    file = item.nodeid.split("::", 1)[0]
    scopes = [item.cls.__name__] if item.cls is not None else []
    classname = ".".join([file.removesuffix(".py").replace("/", "."), *scopes])
    return "::".join([file, *scopes, item.name]), (classname, item.name)


def _run_fusion_emitter_tests(session) -> None:
    marked = [i for i in session.items if i.get_closest_marker("fusion_emitters")]
    report = pathlib.Path(tempfile.mkdtemp(prefix="jaxroute-emitters-")) / "junit.xml"
    hidden = ("JAXROUTE_TEST_CPU_PROFILE", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT")
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    env.update(JAXROUTE_TEST_XLA_OPT="fusion_emitters", XLA_FLAGS=_USER_XLA_FLAGS)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", f"--junitxml={report}"]
    try:
        proc = subprocess.run(
            cmd + [_child_ids(i)[0] for i in marked],
            cwd=session.config.rootpath, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        why = f"exit {proc.returncode}):\n{proc.stdout[-3000:]}"
    except subprocess.TimeoutExpired:
        why = "timed out after 900 s)"
    cases = ET.parse(report).getroot().iter("testcase") if report.exists() else ()
    done = {}  # (classname, name) -> None, or (failure|error|skipped, its text)
    for case in cases:
        bad = [e for e in case if e.tag in ("failure", "error", "skipped")]
        text = None if not bad else (bad[0].tag, bad[0].text or bad[0].get("message", ""))
        done[case.get("classname"), case.get("name")] = text
    lost = ("error", f"no outcome in the child pytest ({why}")
    for item in marked:
        _child_outcomes[item.nodeid] = done.get(_child_ids(item)[1], lost)
    shutil.rmtree(report.parent, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    classic = _apps.CLASSIC_EMITTER in _apps.TEST_XLA_FLAGS.split()
    if not classic or pyfuncitem.get_closest_marker("fusion_emitters") is None:
        return None
    if pyfuncitem.nodeid not in _child_outcomes:
        _run_fusion_emitter_tests(pyfuncitem.session)
    outcome = _child_outcomes[pyfuncitem.nodeid]
    if outcome is not None and outcome[0] == "skipped":
        pytest.skip(f"skipped with XLA's fusion emitters: {outcome[1]}")
    if outcome is not None:
        pytest.fail(f"{outcome[0]} with XLA's fusion emitters:\n{outcome[1]}", pytrace=False)
    return True


# --- opt-in CPU profile: JAXROUTE_TEST_CPU_PROFILE=<path> (docs/testing.md) --------------
# Per test: CPU seconds (user+sys) of the test process plus those of the child processes
# it waited for, and of the app runs tests/_zygote.py forked for it (tests/_apps.py), setup
# and teardown included; so a session fixture's cost lands on the first test that uses
# it. Each xdist worker writes
# <path>.<worker>; the controlling process merges them into one table sorted by CPU.
_PROFILE = os.environ.get("JAXROUTE_TEST_CPU_PROFILE")


def _cpu_now() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    forked = _apps.zygote_cpu_s()  # app runs forked by tests/_zygote.py (not our children)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + forked


_cpu_rows: list[tuple[float, float, str]] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _PROFILE:
        yield
        return
    cpu0, wall0 = _cpu_now(), time.perf_counter()
    yield
    _cpu_rows.append((_cpu_now() - cpu0, time.perf_counter() - wall0, item.nodeid))


def _profile_table(rows: list[tuple[float, float, str]], outside: float) -> str:
    rows = sorted(rows, reverse=True)
    total = sum(r[0] for r in rows)
    lines = [
        f"# {len(rows)} tests: {total:.1f} s CPU in tests, {outside:.1f} s CPU outside tests "
        "(start-up, imports, collection)",
        f"{'cpu_s':>8} {'wall_s':>8}  test",
    ]
    lines += [f"{c:8.2f} {w:8.2f}  {n}" for c, w, n in rows]
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session):
    if not _PROFILE:
        return
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    outside = _cpu_now() - sum(r[0] for r in _cpu_rows)
    if worker:  # a worker: its rows, merged by the controller below
        rows = "".join(f"{c!r}\t{w!r}\t{n}\n" for c, w, n in _cpu_rows)
        pathlib.Path(f"{_PROFILE}.{worker}").write_text(f"#outside\t{outside!r}\n{rows}")
        return
    parts = sorted(pathlib.Path(_PROFILE).parent.glob(pathlib.Path(_PROFILE).name + ".gw*"))
    if parts:  # the workers are this process's children: their CPU is in their parts
        own = resource.getrusage(resource.RUSAGE_SELF)
        outside = own.ru_utime + own.ru_stime
    rows = list(_cpu_rows)
    for part in parts:
        head, *body = part.read_text().splitlines()
        outside += float(head.split("\t")[1])
        rows += [(float(c), float(w), n) for c, w, n in (ln.split("\t", 2) for ln in body)]
        part.unlink()
    pathlib.Path(_PROFILE).write_text(_profile_table(rows, outside))
