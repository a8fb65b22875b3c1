"""EquiRouter's score network (METHOD.md §3), with an exact fast path for the head.

Shapes: features ``x`` ``[B, D]``; trunk output ``z`` ``[B, Z]`` (``Z = 512``); model
embedding ``e`` ``[M, E]`` (``E = 128``); FiLM ``γ, β`` ``[M, Z]``; ``ẽ`` ``[M, Z]``; head
input ``[B, M, 4Z]``; scores ``[B, M]``.

The head's first Dense (``head_in``, kernel ``[4Z, H]``) dominates the cost: it acts on
``B·M`` rows of width ``4Z``. Write its kernel as four ``[Z, H]`` blocks ``W1..W4`` for the
inputs ``z_m``, ``ẽ_m``, ``z_m ⊙ ẽ_m`` and ``|z_m − ẽ_m|``. With ``z_m = γ_m ⊙ z + β_m``::

    z_m W1 + (z_m ⊙ ẽ_m) W3 = z (diag(γ_m) A_m) + β_m A_m,   A_m = W1 + diag(ẽ_m) W3
    ẽ_m W2                  = per-model constant

so only ``z @ P`` (``P_m = diag(γ_m) A_m``, one ``[B, Z] × [Z, M·H]`` GEMM) and the
``|z_m − ẽ_m| W4`` block (``[B·M, Z] × [Z, H]``) scale with ``B·M``: half the work of the
plain ``[B·M, 4Z] × [4Z, H]`` product. Both paths read the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxroute.models.regressors import dense, xavier_uniform, zeros


def _gelu(x: jax.Array) -> jax.Array:
    return nn.gelu(x, approximate=False)


class _DenseParams(nn.Module):
    """Holds a Dense layer's ``kernel`` ``[in, out]`` and ``bias`` ``[out]`` and returns them.

    Same parameter names, shapes and initialisers as ``nn.Dense``, so the parameter tree is
    that of a Dense layer, but the caller decides how to apply the kernel.
    """

    in_features: int
    features: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array]:
        kernel = self.param("kernel", xavier_uniform, (self.in_features, self.features))
        bias = self.param("bias", zeros, (self.features,))
        return kernel, bias


class EquiRouter(nn.Module):
    """EquiRouter score network: shared trunk, FiLM-conditioned per-model head.

    Trunk: ``Dense(1024) → GELU → LN → Dense(512) → GELU → LN → Dense(512) → GELU → LN``
    gives ``z``. Model embedding ``e_m ∈ R^128`` (normal, std 0.02); ``[γ_m, β_m] =
    Dense(1024)(e_m)``, ``z_m = γ_m ⊙ z + β_m``; ``ẽ_m = Dense(512)(e_m)``. Head on
    ``[z_m, ẽ_m, z_m ⊙ ẽ_m, |z_m − ẽ_m|]``: ``Dense(512) → GELU → LN → Dense(1)``. GELU is
    exact (erf), LayerNorm epsilon 1e-5, Dense layers xavier-uniform with zero bias. About
    2.44 M parameters for ``D = 384``, ``M = 11``.

    Attributes:
        num_models: number of candidate models ``M``.
        trunk_sizes: trunk widths; the last one is ``Z``, the width of ``z``, ``γ``, ``β``
            and ``ẽ``.
        embed_dim: model-embedding width ``E``.
        head_size: width ``H`` of the head's hidden layer.
        embed_std: standard deviation of the model-embedding initialiser.
        layer_norm_eps: LayerNorm epsilon.
        fast: use the block-decomposed head (same function and parameters, about half the
            head's FLOPs). ``False`` builds the ``[B, M, 4Z]`` concatenation literally.
            The fast path has a hand-written VJP: reverse mode (``jax.grad``, ``vjp``)
            works, forward mode (``jax.jvp``, ``jacfwd``) needs ``fast=False``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = EquiRouter(num_models=3, trunk_sizes=(16, 8), embed_dim=4, head_size=8)
        >>> x = jnp.ones((2, 5))
        >>> params = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
        >>> params["params"]["head_in"]["kernel"].shape  # [4Z, H]
        (32, 8)
        >>> jax.eval_shape(model.apply, params, x).shape  # real use: model.apply(params, x)
        (2, 3)
    """

    num_models: int
    trunk_sizes: Sequence[int] = (1024, 512, 512)
    embed_dim: int = 128
    head_size: int = 512
    embed_std: float = 0.02
    layer_norm_eps: float = 1e-5
    fast: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Scores ``[B, M]`` (unbounded) for features ``x`` of shape ``[B, D]``."""
        del deterministic
        if x.ndim != 2:
            raise ValueError(f"EquiRouter expects features [B, D], got shape {x.shape}")
        z = x
        for i, width in enumerate(self.trunk_sizes):
            z = _gelu(dense(width, name=f"trunk_dense_{i}")(z))
            z = nn.LayerNorm(epsilon=self.layer_norm_eps, name=f"trunk_ln_{i}")(z)
        width = self.trunk_sizes[-1]  # Z

        e = self.param(
            "model_embedding",
            nn.initializers.normal(stddev=self.embed_std),
            (self.num_models, self.embed_dim),
        )  # [M, E]
        film = dense(2 * width, name="film")(e)  # [M, 2Z]
        gamma, beta = film[:, :width], film[:, width:]  # [M, Z] each
        e_t = dense(width, name="model_proj")(e)  # [M, Z]

        kernel, bias = _DenseParams(4 * width, self.head_size, name="head_in")()
        if self.fast:
            h = _head_in_fast(z, gamma, beta, e_t, kernel, bias)
        else:
            h = _head_in_plain(z, gamma, beta, e_t, kernel, bias)  # [B, M, H]

        h = _gelu(h)
        h = nn.LayerNorm(epsilon=self.layer_norm_eps, name="head_ln")(h)
        return dense(1, name="head_out")(h)[..., 0]  # [B, M]


def _head_in_plain(
    z: jax.Array,
    gamma: jax.Array,
    beta: jax.Array,
    e_t: jax.Array,
    kernel: jax.Array,
    bias: jax.Array,
) -> jax.Array:
    """``Dense([z_m, ẽ_m, z_m ⊙ ẽ_m, |z_m − ẽ_m|])`` built literally; returns ``[B, M, H]``."""
    z_m = z[:, None, :] * gamma[None, :, :] + beta[None, :, :]  # [B, M, Z]
    e_b = jnp.broadcast_to(e_t[None, :, :], z_m.shape)  # [B, M, Z]
    feats = jnp.concatenate([z_m, e_b, z_m * e_b, jnp.abs(z_m - e_b)], axis=-1)  # [B, M, 4Z]
    return jnp.dot(feats, kernel) + bias[None, None, :]


def _fold_kernel(g1: jax.Array, g2: jax.Array, w1: jax.Array, w3: jax.Array) -> jax.Array:
    """``P[k, m, :] = g1[m, k] W1[k] + g2[m, k] W3[k]``, shape ``[Z, M, H]``."""
    return g1.T[:, :, None] * w1[:, None, :] + g2.T[:, :, None] * w3[:, None, :]


@jax.custom_vjp
def _folded_matmul(
    z: jax.Array, g1: jax.Array, g2: jax.Array, w1: jax.Array, w3: jax.Array
) -> jax.Array:
    """``out[b, m] = (z[b] ⊙ g1[m]) W1 + (z[b] ⊙ g2[m]) W3`` as one GEMM; ``[B, M, H]``.

    Shapes: ``z`` ``[B, Z]``, ``g1, g2`` ``[M, Z]``, ``w1, w3`` ``[Z, H]``. The backward pass
    is written by hand: the automatic one reduces the ``[Z, M, H]`` folded kernel through
    materialised broadcasts and is slower than the plain path on CPU; this one costs two
    GEMMs (``dz``, ``dP``) plus four cheap batched contractions. Reverse mode only.
    """
    out, _ = _folded_matmul_fwd(z, g1, g2, w1, w3)
    return out


def _folded_matmul_fwd(z, g1, g2, w1, w3):
    (batch, width), (num_models, hidden) = z.shape, (g1.shape[0], w1.shape[1])
    p = _fold_kernel(g1, g2, w1, w3).reshape(width, num_models * hidden)
    out = jnp.dot(z, p).reshape(batch, num_models, hidden)
    return out, (z, g1, g2, w1, w3, p)


def _folded_matmul_bwd(res, d_out):
    z, g1, g2, w1, w3, p = res
    batch, width = z.shape
    num_models, hidden = g1.shape[0], w1.shape[1]
    d_flat = d_out.reshape(batch, num_models * hidden)
    d_z = jnp.dot(d_flat, p.T)  # [B, Z]
    d_p = jnp.dot(z.T, d_flat).reshape(width, num_models, hidden)  # [Z, M, H]
    d_g1 = jnp.einsum("kmh,kh->mk", d_p, w1)
    d_g2 = jnp.einsum("kmh,kh->mk", d_p, w3)
    d_w1 = jnp.einsum("kmh,mk->kh", d_p, g1)
    d_w3 = jnp.einsum("kmh,mk->kh", d_p, g2)
    return d_z, d_g1, d_g2, d_w1, d_w3


_folded_matmul.defvjp(_folded_matmul_fwd, _folded_matmul_bwd)


def _head_in_fast(
    z: jax.Array,
    gamma: jax.Array,
    beta: jax.Array,
    e_t: jax.Array,
    kernel: jax.Array,
    bias: jax.Array,
) -> jax.Array:
    """The same ``[B, M, H]`` as :func:`_head_in_plain` with about half the FLOPs."""
    w1, w2, w3, w4 = jnp.split(kernel, 4, axis=0)  # [Z, H] each
    # z_m W1 + (z_m ⊙ ẽ_m) W3 with z_m = γ_m ⊙ z + β_m:
    #   = (z ⊙ γ_m) W1 + (z ⊙ γ_m ⊙ ẽ_m) W3 + β_m W1 + (β_m ⊙ ẽ_m) W3
    folded = _folded_matmul(z, gamma, gamma * e_t, w1, w3)  # [B, M, H]
    # Per-model constant [M, H]: β_m W1 + (β_m ⊙ ẽ_m) W3 + ẽ_m W2 + bias.
    const = jnp.dot(beta, w1) + jnp.dot(beta * e_t, w3) + jnp.dot(e_t, w2) + bias[None, :]
    z_m = z[:, None, :] * gamma[None, :, :] + beta[None, :, :]  # [B, M, Z]
    absdiff = jnp.dot(jnp.abs(z_m - e_t[None, :, :]), w4)  # the one full B·M block
    return folded + absdiff + const[None, :, :]
