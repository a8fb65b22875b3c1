"""The transformer layer of the Flax encoder: dense products in float32 or bfloat16,
multi-head self-attention on fused projections, and MPNet's relative-position buckets."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxroute.encoders._config import BertConfig


def relative_position_buckets(
    length: int, num_buckets: int = 32, max_distance: int = 128
) -> np.ndarray:
    """MPNet's (T5's bidirectional) bucket of each relative position, int ``[T, T]``.

    Entry ``[i, j]`` buckets ``j - i``: half the buckets for keys before the query,
    half after; distances below a quarter of ``num_buckets`` get a bucket each, longer
    ones share logarithmically wider buckets up to ``max_distance``. Computed in
    float32 as Hugging Face's ``MPNetEncoder.relative_position_bucket``.

    >>> relative_position_buckets(3).tolist()
    [[0, 17, 18], [1, 0, 17], [2, 1, 0]]
    """
    pos = np.arange(length, dtype=np.int64)
    n = -(pos[None, :] - pos[:, None])  # -(key - query)
    half = num_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = (
            np.log(n.astype(np.float32) / np.float32(max_exact))
            / np.float32(np.log(max_distance / max_exact))
            * np.float32(half - max_exact)
        )
    large = max_exact + np.where(n < max_exact, 0, scaled).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(n < max_exact, n, large)


def _dot(a: jax.Array, b: jax.Array, dims, precision: Any, matmul_dtype: Any) -> jax.Array:
    """``lax.dot_general`` with float32 out.

    With ``matmul_dtype`` (bfloat16) both operands are cast to it and the product
    accumulates in float32; with None it is a float32 product at ``precision``.
    """
    if matmul_dtype is None:
        return jax.lax.dot_general(a, b, dims, precision=precision)
    return jax.lax.dot_general(
        a.astype(matmul_dtype),
        b.astype(matmul_dtype),
        dims,
        preferred_element_type=jnp.float32,
    )


class Dense(nn.Module):
    """``nn.Dense``'s parameters (``kernel`` ``[in, out]``, ``bias``) and function, with
    the product in ``matmul_dtype`` (None: float32 at ``precision``)."""

    features: int
    precision: Any = None
    matmul_dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        dims = (((x.ndim - 1,), (0,)), ((), ()))  # x's last axis with the kernel's first
        y = _dot(x, kernel, dims, self.precision, self.matmul_dtype)
        return y + bias.astype(jnp.float32).reshape((1,) * (y.ndim - 1) + (-1,))


def _attention(
    qkv: jax.Array, bias: jax.Array, num_heads: int, precision: Any, matmul_dtype: Any = None
) -> jax.Array:
    """Multi-head self-attention core on fused projections.

    Args:
      qkv: ``[B, T, 3D]``, the query, key and value projections side by side.
      bias: ``[B, 1, 1, T]`` additive key mask (0 or a large negative number), or
        ``[B, H, T, T]``: the mask plus a relative-position bias (MPNet).
      num_heads: H.
      precision: matmul precision.
      matmul_dtype: None (float32 products) or bfloat16 (bfloat16 operands, float32
        accumulation; the softmax itself stays float32).

    Returns:
      ``[B, T, D]``. Heads go to a ``[B, H, T, Dh]`` layout so both products are
      ``dot_general`` calls with batch dimensions ``(B, H)`` leading, which XLA's CPU
      backend runs as plain batched GEMMs (a ``bqhd,bkhd`` einsum lowers to slow
      transposed loops). The softmax is normalised after the value product, which
      divides ``[B, H, T, Dh]`` instead of ``[B, H, T, T]``.
    """
    b, t, d3 = qkv.shape
    d = d3 // 3
    dh = d // num_heads
    heads = qkv.reshape(b, t, 3, num_heads, dh).transpose(2, 0, 3, 1, 4)  # [3, B, H, T, Dh]
    q = heads[0] * np.float32(1.0 / np.sqrt(dh))
    k, v = heads[1], heads[2]
    batch = ((0, 1), (0, 1))
    scores = _dot(q, k, (((3,), (3,)), batch), precision, matmul_dtype) + bias
    weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
    ctx = _dot(weights, v, (((3,), (2,)), batch), precision, matmul_dtype)
    ctx = ctx / weights.sum(axis=-1, keepdims=True)  # [B, H, T, Dh]
    return ctx.transpose(0, 2, 1, 3).reshape(b, t, d)


class Layer(nn.Module):
    """One transformer layer (post-LayerNorm, as BERT and MPNet); a ``nn.scan`` body
    (carry ``x`` ``[B, T, D]``)."""

    config: BertConfig
    precision: Any = None
    matmul_dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> tuple[jax.Array, None]:
        cfg = self.config
        eps = cfg.layer_norm_eps
        dense = lambda n, name: Dense(n, self.precision, self.matmul_dtype, name=name)  # noqa: E731
        qkv = dense(3 * cfg.hidden_size, "qkv")(x)  # query, key, value in one GEMM
        a = _attention(qkv, bias, cfg.num_attention_heads, self.precision, self.matmul_dtype)
        a = dense(cfg.hidden_size, "attention_output")(a)
        x = nn.LayerNorm(epsilon=eps, name="attention_layer_norm")(x + a)
        f = dense(cfg.intermediate_size, "intermediate")(x)
        # tanh GELU with bfloat16 products: its error is below the rounding of its output.
        f = jax.nn.gelu(f, approximate=self.matmul_dtype is not None)
        f = dense(cfg.hidden_size, "output")(f)
        return nn.LayerNorm(epsilon=eps, name="output_layer_norm")(x + f), None
