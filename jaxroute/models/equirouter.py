"""EquiRouter's score network (docs/method.md §3), with an exact fast path for the head.

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

``matmul_dtype="bfloat16"`` (opt-in; float32 is the default and the reference) runs the
big GEMMs — the trunk's Dense layers, ``z @ P``, the ``|z_m − ẽ_m| W4`` block and their
gradient GEMMs — on bfloat16 inputs with float32 accumulation and float32 results.
Parameters, optimiser state, LayerNorm, GELU and the loss stay float32; only the GEMM
operands are rounded (bfloat16 keeps 8 significant bits, a relative rounding of at most
2⁻⁸). On a CPU with bfloat16 matrix units (AMX / AVX512-BF16) EquiRouter training
runs about 1.7× faster, with the same final loss within seed noise.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxroute.models.regressors import dense, xavier_uniform, zeros


def _gelu(x: jax.Array) -> jax.Array:
    return nn.gelu(x, approximate=False)


MATMUL_DTYPES = ("float32", "bfloat16")


def _bf16_dot(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` of bfloat16 operands, accumulated and returned in float32."""
    return jnp.dot(a, b, preferred_element_type=jnp.float32)


def _transposed(x: jax.Array) -> jax.Array:
    """``x.T`` of a matrix, written out row-major.

    XLA's CPU backend runs a bfloat16 dot fast only when neither operand is transposed; a
    plain ``x.T`` operand is folded into the dot's dimension numbers and the dot is then
    upcast to float32. Going through a ``[rows/2, 2, cols]`` view keeps XLA from folding
    it, so the transpose is materialised (cheap next to the GEMM) and the dot stays
    bfloat16. Same values either way; odd ``rows`` fall back to ``x.T``.
    """
    rows, cols = x.shape
    if rows % 2:
        return x.T
    return jnp.transpose(x.reshape(rows // 2, 2, cols), (2, 0, 1)).reshape(cols, rows)


@jax.custom_vjp
def _bf16_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a @ b`` (``a`` ``[..., K]`` float32, ``b`` ``[K, N]`` float32) in mixed precision.

    Operands are rounded to bfloat16, products accumulated in float32, the result is
    float32 ``[..., N]``. The backward pass rounds the cotangent ``g`` to bfloat16 the same
    way: ``dA = g Bᵀ`` and ``dB = Aᵀ g`` accumulate in float32 and are returned in float32.
    """
    return _bf16_matmul_fwd(a, b)[0]


def _bf16_matmul_fwd(a, b):
    a16, b16 = a.astype(jnp.bfloat16), b.astype(jnp.bfloat16)
    return _bf16_dot(a16, b16), (a16, b16)


def _bf16_matmul_bwd(res, g):
    a16, b16 = res
    k, n = b16.shape
    g16 = g.astype(jnp.bfloat16)
    d_a = _bf16_dot(g16, _transposed(b16))
    d_b = _bf16_dot(_transposed(a16.reshape(-1, k)), g16.reshape(-1, n))
    return d_a, d_b


_bf16_matmul.defvjp(_bf16_matmul_fwd, _bf16_matmul_bwd)


def _matmul(a: jax.Array, b: jax.Array, matmul_dtype: str) -> jax.Array:
    """``a @ b`` in float32 (``jnp.dot``) or in mixed precision (:func:`_bf16_matmul`)."""
    return _bf16_matmul(a, b) if matmul_dtype == "bfloat16" else jnp.dot(a, b)


def _bf16_dot_general(lhs, rhs, dimension_numbers, precision=None):
    """``nn.Dense``'s ``dot_general`` (``lhs``'s last axis with the kernel's first) as
    :func:`_bf16_matmul`."""
    del precision
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
    if tuple(lhs_contract) != (lhs.ndim - 1,) or tuple(rhs_contract) != (0,) or lhs_batch:
        raise NotImplementedError(f"only Dense's contraction, got {dimension_numbers}")
    return _bf16_matmul(lhs, rhs)


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
        matmul_dtype: ``"float32"`` (default) or ``"bfloat16"``: the trunk's Dense layers
            and the head's first Dense (``z @ P`` and the ``|z_m − ẽ_m|`` block on the fast
            path) take bfloat16 operands with float32 accumulation, forward and backward.
            Parameters, LayerNorm, GELU, the small FiLM / projection / output layers and
            the loss stay float32. Opt-in: faster on CPUs with bfloat16 matrix units,
            scores differ from float32 by bfloat16 rounding (relative RMS about 2⁻⁸).

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
    matmul_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(
                f"EquiRouter.matmul_dtype must be one of {MATMUL_DTYPES}, got {self.matmul_dtype!r}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Scores ``[B, M]`` (unbounded) for features ``x`` of shape ``[B, D]``."""
        del deterministic
        if x.ndim != 2:
            raise ValueError(f"EquiRouter expects features [B, D], got shape {x.shape}")
        z = x
        # bfloat16: the same Dense parameters; only the product is mixed precision.
        product = _bf16_dot_general if self.matmul_dtype == "bfloat16" else None
        for i, width in enumerate(self.trunk_sizes):
            z = _gelu(dense(width, name=f"trunk_dense_{i}", dot_general=product)(z))
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
            h = _head_in_fast(z, gamma, beta, e_t, kernel, bias, self.matmul_dtype)
        else:
            h = _head_in_plain(z, gamma, beta, e_t, kernel, bias, self.matmul_dtype)

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
    matmul_dtype: str = "float32",
) -> jax.Array:
    """``Dense([z_m, ẽ_m, z_m ⊙ ẽ_m, |z_m − ẽ_m|])`` built literally; returns ``[B, M, H]``."""
    z_m = z[:, None, :] * gamma[None, :, :] + beta[None, :, :]  # [B, M, Z]
    e_b = jnp.broadcast_to(e_t[None, :, :], z_m.shape)  # [B, M, Z]
    feats = jnp.concatenate([z_m, e_b, z_m * e_b, jnp.abs(z_m - e_b)], axis=-1)  # [B, M, 4Z]
    return _matmul(feats, kernel, matmul_dtype) + bias[None, None, :]


def _fold_kernel(g1: jax.Array, g2: jax.Array, w1: jax.Array, w3: jax.Array) -> jax.Array:
    """``P[k, m, :] = g1[m, k] W1[k] + g2[m, k] W3[k]``, shape ``[Z, M, H]``."""
    return g1.T[:, :, None] * w1[:, None, :] + g2.T[:, :, None] * w3[:, None, :]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _folded_matmul(
    z: jax.Array, g1: jax.Array, g2: jax.Array, w1: jax.Array, w3: jax.Array, bf16: bool
) -> jax.Array:
    """``out[b, m] = (z[b] ⊙ g1[m]) W1 + (z[b] ⊙ g2[m]) W3`` as one GEMM; ``[B, M, H]``.

    Shapes: ``z`` ``[B, Z]``, ``g1, g2`` ``[M, Z]``, ``w1, w3`` ``[Z, H]``. The backward pass
    is written by hand: the automatic one reduces the ``[Z, M, H]`` folded kernel through
    materialised broadcasts and is slower than the plain path on CPU; this one costs two
    GEMMs (``dz``, ``dP``) plus four cheap batched contractions. Reverse mode only. With
    ``bf16`` both GEMMs and ``z @ P`` take bfloat16 operands (``z``, ``P`` and the
    cotangent rounded) and accumulate in float32; ``P`` is folded in float32 first.
    """
    out, _ = _folded_matmul_fwd(z, g1, g2, w1, w3, bf16)
    return out


def _folded_matmul_fwd(z, g1, g2, w1, w3, bf16):
    (batch, width), (num_models, hidden) = z.shape, (g1.shape[0], w1.shape[1])
    p = _fold_kernel(g1, g2, w1, w3).reshape(width, num_models * hidden)
    if bf16:
        z, p = z.astype(jnp.bfloat16), p.astype(jnp.bfloat16)
        out = _bf16_dot(z, p)
    else:
        out = jnp.dot(z, p)
    return out.reshape(batch, num_models, hidden), (z, g1, g2, w1, w3, p)


def _folded_matmul_bwd(bf16, res, d_out):
    z, g1, g2, w1, w3, p = res  # z, p in bfloat16 when bf16
    batch, width = z.shape
    num_models, hidden = g1.shape[0], w1.shape[1]
    d_flat = d_out.reshape(batch, num_models * hidden)
    if bf16:
        d_flat = d_flat.astype(jnp.bfloat16)
        d_z = _bf16_dot(d_flat, _transposed(p))  # [B, Z]
        d_p = _bf16_dot(_transposed(z), d_flat)
    else:
        d_z = jnp.dot(d_flat, p.T)  # [B, Z]
        d_p = jnp.dot(z.T, d_flat)
    d_p = d_p.reshape(width, num_models, hidden)  # [Z, M, H]
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
    matmul_dtype: str = "float32",
) -> jax.Array:
    """The same ``[B, M, H]`` as :func:`_head_in_plain` with about half the FLOPs."""
    w1, w2, w3, w4 = jnp.split(kernel, 4, axis=0)  # [Z, H] each
    # z_m W1 + (z_m ⊙ ẽ_m) W3 with z_m = γ_m ⊙ z + β_m:
    #   = (z ⊙ γ_m) W1 + (z ⊙ γ_m ⊙ ẽ_m) W3 + β_m W1 + (β_m ⊙ ẽ_m) W3
    bf16 = matmul_dtype == "bfloat16"
    folded = _folded_matmul(z, gamma, gamma * e_t, w1, w3, bf16)  # [B, M, H]
    # Per-model constant [M, H]: β_m W1 + (β_m ⊙ ẽ_m) W3 + ẽ_m W2 + bias.
    const = jnp.dot(beta, w1) + jnp.dot(beta * e_t, w3) + jnp.dot(e_t, w2) + bias[None, :]
    z_m = z[:, None, :] * gamma[None, :, :] + beta[None, :, :]  # [B, M, Z]
    absdiff = _matmul(jnp.abs(z_m - e_t[None, :, :]), w4, matmul_dtype)  # the one B·M block
    return folded + absdiff + const[None, :, :]
