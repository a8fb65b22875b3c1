"""Private helpers shared by the loss families: input checks, masks, safe reductions."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

ReduceFn = Callable[..., jax.Array]


def prepare(
    scores: ArrayLike,
    labels: ArrayLike,
    costs: ArrayLike | None = None,
    where: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array]:
    """Casts inputs, broadcasts ``where`` and zeroes masked entries.

    Masked scores, labels and costs are replaced by 0 so that a NaN or an infinity in a
    masked slot can never reach a value or a gradient.

    Returns:
      ``(scores, labels, costs, where)``, all of shape ``[..., M]``; ``where`` is bool.
    """
    scores = jnp.asarray(scores)
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        scores = scores.astype(jnp.float32)
    labels = jnp.asarray(labels, dtype=scores.dtype)
    if scores.ndim == 0:
        raise ValueError("scores must have at least one axis [..., M]; got a scalar.")
    if labels.shape != scores.shape:
        raise ValueError(
            f"scores and labels must have the same shape [..., M]; got {scores.shape} and "
            f"{labels.shape}."
        )
    if where is None:
        where = jnp.ones(scores.shape, dtype=bool)
    else:
        where = jnp.broadcast_to(jnp.asarray(where, dtype=bool), scores.shape)
    scores = jnp.where(where, scores, 0.0)
    labels = jnp.where(where, labels, 0.0)
    if costs is not None:
        costs = jnp.asarray(costs, dtype=scores.dtype)
        if costs.shape != scores.shape:
            raise ValueError(
                f"costs must have the shape of scores [..., M]; got {costs.shape} and "
                f"{scores.shape}."
            )
        costs = jnp.where(where, costs, 0.0)
    return scores, labels, costs, where


def list_weights(weights: ArrayLike | None, batch_shape: tuple[int, ...], dtype) -> jax.Array:
    """Per-list (per-prompt) weights broadcast to the batch shape ``[...]``."""
    if weights is None:
        return jnp.ones(batch_shape, dtype=dtype)
    return jnp.broadcast_to(jnp.asarray(weights, dtype=dtype), batch_shape)


def safe_reduce(
    values: jax.Array,
    where: jax.Array,
    weights: jax.Array | None,
    reduce_fn: ReduceFn | None,
) -> jax.Array:
    """Reduces ``values`` over the entries where ``where`` holds.

    ``jnp.mean`` becomes a weighted mean that is 0 (with zero, finite gradients) when
    nothing is valid; ``jnp.sum`` a weighted sum; any other callable is called as
    ``reduce_fn(values * weights, where=where)``; ``None`` returns the unreduced values,
    with invalid entries set to 0.
    """
    w = jnp.ones_like(values) if weights is None else jnp.broadcast_to(weights, values.shape)
    w = jnp.where(where, w, 0.0)
    values = jnp.where(where, values, 0.0)
    if reduce_fn is None:
        return values
    if reduce_fn is jnp.mean:
        total = jnp.sum(w)
        return jnp.sum(values * w) / jnp.where(total > 0, total, 1.0)
    if reduce_fn is jnp.sum:
        return jnp.sum(values * w)
    return reduce_fn(values * w, where=where)


def masked_log_softmax(logits: jax.Array, where: jax.Array, axis: int = -1) -> jax.Array:
    """``log_softmax`` over the entries where ``where`` holds; 0 elsewhere, NaN-free.

    A slice with no valid entry gives all zeros.
    """
    neg = jnp.finfo(logits.dtype).min
    x = jnp.where(where, logits, neg)
    x_max = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    x_max = jnp.where(jnp.isfinite(x_max) & (x_max > neg), x_max, 0.0)
    shifted = jnp.where(where, x - x_max, 0.0)
    expd = jnp.where(where, jnp.exp(shifted), 0.0)
    total = jnp.sum(expd, axis=axis, keepdims=True)
    lse = jnp.log(jnp.where(total > 0, total, 1.0))
    return jnp.where(where, shifted - lse, 0.0)


def masked_softmax(logits: jax.Array, where: jax.Array, axis: int = -1) -> jax.Array:
    """``softmax`` over the entries where ``where`` holds; 0 elsewhere, NaN-free."""
    return jnp.where(where, jnp.exp(masked_log_softmax(logits, where, axis=axis)), 0.0)


def true_order(labels: jax.Array, where: jax.Array, costs: jax.Array | None = None) -> jax.Array:
    """Indices that sort each list by label descending, then cost ascending, then index.

    Masked entries go last. Returns integer indices of shape ``[..., M]``.
    """
    idx = jnp.broadcast_to(jnp.arange(labels.shape[-1]), labels.shape)
    keys = [idx]
    if costs is not None:
        keys.append(costs)
    keys += [-labels, ~where]
    # jnp.lexsort: the last key is the primary one.
    return jnp.lexsort(tuple(keys), axis=-1)


def tie_groups(labels: jax.Array, where: jax.Array, costs: jax.Array | None = None) -> jax.Array:
    """``[..., M, M]`` bool: items i and j are both valid and tied (in label and cost)."""
    same = labels[..., :, None] == labels[..., None, :]
    if costs is not None:
        same = same & (costs[..., :, None] == costs[..., None, :])
    return same & where[..., :, None] & where[..., None, :]


def informative(labels: jax.Array, where: jax.Array, costs: jax.Array | None = None) -> jax.Array:
    """``[...]`` bool: the list has two valid items that differ in label (or cost).

    Ranking losses are 0 on lists that are not informative (all-tied or all-masked).
    """
    pair = where[..., :, None] & where[..., None, :]
    differ = labels[..., :, None] != labels[..., None, :]
    if costs is not None:
        differ = differ | (costs[..., :, None] != costs[..., None, :])
    return jnp.any(pair & differ, axis=(-2, -1))
