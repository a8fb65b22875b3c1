"""Exact, order-independent sums of float32 values with jax_enable_x64 off.

A float32 array ``x`` with ``|x| ≤ 2**e`` is written as ``LIMBS`` int32 limbs of
``LIMB_BITS`` bits each: ``x ≈ 2**e · Σ_l k_l · 2**(-LIMB_BITS·(l+1))`` with a truncation
error below ``2**(e - LIMB_BITS·LIMBS - 1)`` (``2**-45`` of the largest value). Limbs of
different values add in int32 without rounding, in any order (scatter-add, sharded
reductions), so sums over prompts are exact up to that truncation and identical on any
device count. The host adds the limb sums in float64. This is the sweeps' "float64
equivalent" accumulation: no global x64 flag, works on TPU, deterministic.

Limit: ``N · 2**LIMB_BITS < 2**31``, i.e. up to 1,048,575 prompts per sum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

LIMB_BITS = 11
LIMBS = 4
MAX_PROMPTS = 2 ** (31 - LIMB_BITS) - 1


def scale_exponent(x: ArrayLike) -> int:
    """``e`` with ``max|x| ≤ 2**e`` (host side, from ``np.frexp``), within float32 range."""
    m = float(np.max(np.abs(np.asarray(x, np.float32)), initial=0.0))
    if not np.isfinite(m):
        raise ValueError("values must be finite")
    return int(np.clip(np.frexp(m)[1], -100, 100)) if m > 0 else 0


def to_limbs(x: jax.Array, inv_scale: jax.Array) -> jax.Array:
    """Splits float32 ``x`` ``[...]`` into int32 limbs ``[..., LIMBS]`` (see module doc).

    ``inv_scale`` is the float32 power of two ``2**-e`` (exact scaling).
    """
    r = jnp.asarray(x, jnp.float32) * jnp.asarray(inv_scale, jnp.float32)
    limbs = []
    for _ in range(LIMBS):
        r = r * float(2**LIMB_BITS)
        k = jnp.floor(r + 0.5)  # exact for |r| <= 2**LIMB_BITS
        limbs.append(k.astype(jnp.int32))
        r = r - k  # exact
    return jnp.stack(limbs, axis=-1)


def from_limbs(limbs: ArrayLike, exponent: int) -> np.ndarray:
    """Host-side float64 value of int limb sums ``[..., LIMBS]``."""
    limbs = np.asarray(limbs).astype(np.float64)
    w = np.ldexp(1.0, exponent - LIMB_BITS * np.arange(1, LIMBS + 1))
    return limbs @ w
