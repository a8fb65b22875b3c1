"""Strict JAX for every test (STYLE.md)."""

import os

os.environ.setdefault("JAXROUTE_TINY", "1")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# Many tests compile the same tiny programs in fresh Task objects: a persistent cache
# keyed by the program text makes the second compile a disk read.
jax.config.update(
    "jax_compilation_cache_dir", os.environ.get("JAXROUTE_JIT_CACHE", "/tmp/jaxroute-jit-cache")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
