"""Strict JAX for every test (STYLE.md); the suite's compilation cache; xdist groups."""

import os

os.environ.setdefault("JAXROUTE_TINY", "1")

import jax  # noqa: E402
from _apps import JIT_CACHE_DIR, JIT_CACHE_MIN_COMPILE_S  # noqa: E402

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
