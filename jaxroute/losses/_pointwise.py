"""Pointwise losses: each (prompt, model) entry is scored on its own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxroute.losses._utils import ReduceFn, list_weights, prepare, safe_reduce


def mse_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Mean squared error between scores and quality labels.

    .. math:: \ell = \operatorname{mean}_{b, m:\ \text{valid}} (s_{bm} - y_{bm})^2

    The mean runs over all valid entries of the batch (as ``torch.nn.functional.mse_loss``
    in the reference EquiRouter). It is a pointwise loss: an all-tied list is not special.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities.
      costs: unused; accepted for the common signature.
      where: optional ``[..., M]`` bool mask; False entries are excluded.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` (weighted mean over valid entries, 0 if none), ``jnp.sum``,
        another reduction, or ``None`` for the ``[..., M]`` per-entry losses.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> print(round(float(mse_loss(jnp.array([0.5, 1.0]), jnp.array([1.0, 1.0]))), 4))
    0.125
    """
    del costs
    scores, labels, _, where = prepare(scores, labels, None, where)
    w = list_weights(weights, scores.shape[:-1], scores.dtype)[..., None]
    return safe_reduce(jnp.square(scores - labels), where, w, reduce_fn)


def sigmoid_bce_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Binary cross-entropy with logits; labels are probabilities in ``[0, 1]``.

    .. math:: \ell = \operatorname{mean}_{\text{valid}}
        \big[\operatorname{softplus}(s) - y\,s\big]

    (``optax.sigmoid_binary_cross_entropy``; numerically stable for any score.)

    Args:
      scores: ``[..., M]`` logits.
      labels: ``[..., M]`` targets in ``[0, 1]``.
      costs: unused; accepted for the common signature.
      where: optional ``[..., M]`` bool mask.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: as in :func:`mse_loss`.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> print(round(float(sigmoid_bce_loss(jnp.array([0.0]), jnp.array([1.0]))), 4))
    0.6931
    """
    del costs
    scores, labels, _, where = prepare(scores, labels, None, where)
    w = list_weights(weights, scores.shape[:-1], scores.dtype)[..., None]
    return safe_reduce(optax.sigmoid_binary_cross_entropy(scores, labels), where, w, reduce_fn)
