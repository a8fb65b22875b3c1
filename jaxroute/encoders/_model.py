"""The Flax sentence encoder: BERT-family embeddings, the transformer layers, pooling
and L2 normalisation, as sentence-transformers computes them.

Which embeddings and attention bias a model has comes from its architecture
(:data:`jaxroute.encoders._config.ARCHITECTURES`); the pooling from :data:`POOLINGS`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxroute.encoders._config import BertConfig
from jaxroute.encoders._layers import Layer, relative_position_buckets


def _absolute_positions(input_ids: jax.Array, pad_token_id: int) -> jax.Array:
    del pad_token_id
    return jnp.arange(input_ids.shape[1])[None]  # [1, T]


def _positions_after_padding(input_ids: jax.Array, pad_token_id: int) -> jax.Array:
    real = (input_ids != pad_token_id).astype(jnp.int32)
    return jnp.cumsum(real, axis=1) * real + pad_token_id  # [B, T]


# Architecture.position_ids -> (input_ids [B, T], pad id) -> position ids [1 or B, T].
POSITION_IDS = {"absolute": _absolute_positions, "after_padding": _positions_after_padding}


def _mean_pool(x: jax.Array, mask: jax.Array, precision: Any) -> jax.Array:
    summed = jnp.einsum("btd,bt->bd", x, mask, precision=precision)
    return summed / jnp.maximum(mask.sum(-1, keepdims=True), 1e-9)


def _cls_pool(x: jax.Array, mask: jax.Array, precision: Any) -> jax.Array:
    del precision
    return x[:, 0] * (mask[:, :1] > 0)


# Pooling of the last hidden states [B, T, D] under the float mask [B, T] into [B, D]:
# "mean" over the mask (sentence-transformers' pooling_mode_mean_tokens), "cls" the first
# token (pooling_mode_cls_token).
POOLINGS = {"mean": _mean_pool, "cls": _cls_pool}


class SentenceEncoder(nn.Module):
    """Embeddings + transformer layers + pooling (+ L2 normalisation).

    The layers share one traced body (``nn.scan``; their parameters are stacked on a
    leading ``[L]`` axis under ``layers``), so compiling costs one layer, not L (with
    bfloat16 products the scan is unrolled: small calls run 3x faster). Each
    layer's query, key and value projections are one fused ``[D, 3D]`` Dense (``qkv``).
    MPNet adds a bias of the bucketed relative position to every layer's attention
    scores, from one ``relative_attention_bias`` table ``[buckets, H]``.

    Attributes:
      config: the architecture.
      precision: matmul precision (``jax.lax.Precision.HIGHEST`` keeps float32 parity
        with the PyTorch reference on accelerators; CPU is float32 either way).
      matmul_dtype: None for float32 products, or ``jnp.bfloat16`` for bfloat16
        operands with float32 accumulation in the transformer layers (see
        :func:`jaxroute.encoders.resolve_dtype`). The layer kernels may be stored in
        that dtype.
      pooling: a key of :data:`POOLINGS`.
      normalize: L2-normalise the pooled vector.

    Call with ``input_ids`` and ``attention_mask``, both int ``[B, T]``; returns float32
    ``[B, D]`` (unit vectors when ``normalize``; rows whose mask is all zero give the
    zero vector).

    >>> cfg = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=2,
    ...                  num_attention_heads=2, intermediate_size=16,
    ...                  max_position_embeddings=12)
    >>> model = SentenceEncoder(cfg)
    >>> ids = jnp.array([[1, 5, 2, 0]]); mask = jnp.array([[1, 1, 1, 0]])
    >>> params = jax.eval_shape(model.init, jax.random.key(0), ids, mask)  # shapes only
    >>> params["params"]["layers"]["intermediate"]["kernel"].shape  # [L, D, F]
    (2, 8, 16)
    >>> jax.eval_shape(model.apply, params, ids, mask).shape
    (1, 8)
    """

    config: BertConfig
    precision: Any = jax.lax.Precision.HIGHEST
    matmul_dtype: Any = None
    pooling: str = "mean"
    normalize: bool = True

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        cfg = self.config
        arch = cfg.architecture
        _, t = input_ids.shape
        word = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="word_embeddings")(input_ids)
        pos = nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, name="position_embeddings")
        x = word + pos(POSITION_IDS[arch.position_ids](input_ids, cfg.pad_token_id))
        if arch.token_types:
            typ = nn.Embed(cfg.type_vocab_size, cfg.hidden_size, name="token_type_embeddings")
            x = x + typ(jnp.zeros_like(input_ids))
        x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="embeddings_layer_norm")(x)
        mask = attention_mask.astype(jnp.float32)
        # [B, 1, 1, T]: broadcast over heads and queries inside the fused add.
        bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min / 2)
        if arch.relative_attention:  # [B, H, T, T], computed once, shared by the layers
            buckets = relative_position_buckets(t, cfg.relative_attention_num_buckets)
            table = nn.Embed(
                cfg.relative_attention_num_buckets,
                cfg.num_attention_heads,
                name="relative_attention_bias",
            )
            bias = bias + table(jnp.asarray(buckets)).transpose(2, 0, 1)[None]
        layers = nn.scan(
            Layer,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=nn.broadcast,
            length=cfg.num_hidden_layers,
            # bfloat16: unrolled, so each layer reads its own kernels instead of slicing
            # them out of the stack in a loop (a 16-token call: 21 ms -> 7 ms).
            unroll=cfg.num_hidden_layers if self.matmul_dtype is not None else 1,
        )
        x, _ = layers(cfg, self.precision, self.matmul_dtype, name="layers")(x, bias)
        pooled = POOLINGS[self.pooling](x, mask, self.precision)
        if not self.normalize:
            return pooled
        norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
        return pooled / jnp.maximum(norm, 1e-12)
