"""Strict JAX for every test (STYLE.md)."""

import os

os.environ.setdefault("JAXROUTE_TINY", "1")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
