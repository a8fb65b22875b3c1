"""Strict JAX for every test (STYLE.md); the suite's compilation cache."""

import os

os.environ.setdefault("JAXROUTE_TINY", "1")

import jax  # noqa: E402
from _apps import JIT_CACHE_DIR, JIT_CACHE_MIN_COMPILE_S  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# Many tests compile the same tiny programs in fresh Task objects: a persistent cache
# keyed by the program text makes the second compile a disk read (tests/_apps.py).
jax.config.update("jax_compilation_cache_dir", JIT_CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", float(JIT_CACHE_MIN_COMPILE_S))
