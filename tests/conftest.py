"""Strict JAX for every test (docs/design.md); the suite's compilation cache; xdist groups."""

import os
import pathlib
import resource
import time

os.environ.setdefault("JAXROUTE_TINY", "1")

import _apps  # noqa: E402
from _apps import JIT_CACHE_DIR, JIT_CACHE_MIN_COMPILE_S, xla_flags  # noqa: E402

# Before JAX starts: read once, and inherited by every process a test starts.
os.environ["XLA_FLAGS"] = xla_flags(os.environ.get("XLA_FLAGS", ""))
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
