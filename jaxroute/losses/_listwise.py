"""Listwise losses: ListNet softmax cross-entropy and ListMLE (both through rax)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import rax
from jax.typing import ArrayLike

from jaxroute.losses._utils import (
    ReduceFn,
    informative,
    list_weights,
    masked_softmax,
    prepare,
    safe_reduce,
    true_order,
)


def softmax_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    label_temperature: float | None = None,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""ListNet: cross-entropy between a label distribution and ``softmax(scores)``.

    .. math:: \ell_b = -\sum_{m\ \text{valid}} p_{bm} \log \operatorname{softmax}(s_b)_m,
        \qquad p_b = \begin{cases} y_b / \sum_m y_{bm} & \text{label\_temperature None} \\
        \operatorname{softmax}(y_b / T) & \text{otherwise} \end{cases}

    Computed by ``rax.softmax_loss``. Lists whose valid labels are all equal (or that are
    fully masked) carry no ranking information and give 0; they are left out of the
    mean. With normalised labels, a list of all-zero labels is likewise 0.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities (non-negative when normalised).
      costs: unused; accepted for the common signature.
      label_temperature: None to normalise the labels to sum 1, or a temperature ``T``
        for ``softmax(labels / T)``.
      where: optional ``[..., M]`` bool mask.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` over informative lists, ``jnp.sum``, or None for ``[...]``.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> s, y = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
    >>> print(round(float(softmax_loss(s, y)), 4))  # log 2
    0.6931
    """
    del costs
    scores, labels, _, where = prepare(scores, labels, None, where)
    ok = informative(labels, where)
    # Rows that are excluded get a harmless, fully valid stand-in (finite gradients).
    where_r = where | ~ok[..., None]
    if label_temperature is None:

        def label_fn(y, where):
            total = jnp.sum(jnp.where(where, y, 0.0), axis=-1, keepdims=True)
            return jnp.where(where, y, 0.0) / jnp.where(total > 0, total, 1.0)

    else:

        def label_fn(y, where):
            return masked_softmax(y / label_temperature, where)

    per_list = rax.softmax_loss(scores, labels, where=where_r, label_fn=label_fn, reduce_fn=None)
    list_w = list_weights(weights, scores.shape[:-1], scores.dtype)
    return safe_reduce(per_list, ok, list_w, reduce_fn)


def listmle_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""ListMLE: negative Plackett–Luce log-likelihood of the true order.

    .. math:: \ell_b = -\sum_{k=1}^{n} \Big[s_{b\pi_k}
        - \log \sum_{l \ge k} \exp s_{b\pi_l}\Big]

    with ``π`` the valid models sorted by label descending; ties are broken by lower
    cost when ``costs`` are given, else by index (stable). Computed by
    ``rax.listmle_loss`` on the ranks of that order. Lists with no two valid models
    that differ (in label, or in cost when costs are given) give 0 and are left out of
    the mean.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities.
      costs: optional ``[..., M]`` costs used to break label ties.
      where: optional ``[..., M]`` bool mask; masked models are not ranked.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` over informative lists, ``jnp.sum``, or None for ``[...]``.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> s, y = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
    >>> print(round(float(listmle_loss(s, y)), 4))  # -log(1/2) - log(1)
    0.6931
    """
    scores, labels, costs, where = prepare(scores, labels, costs, where)
    ok = informative(labels, where, costs)
    order = true_order(labels, where, costs)
    m = scores.shape[-1]
    # rank_labels[order[k]] = m - k: distinct pseudo-labels encoding the true order.
    rank_labels = jnp.zeros_like(scores)
    pseudo = jnp.broadcast_to(jnp.arange(m, 0, -1, dtype=scores.dtype), scores.shape)
    rank_labels = jnp.put_along_axis(rank_labels, order, pseudo, axis=-1, inplace=False)
    where_r = where | ~ok[..., None]
    per_list = rax.listmle_loss(scores, rank_labels, where=where_r, reduce_fn=None)
    list_w = list_weights(weights, scores.shape[:-1], scores.dtype)
    return safe_reduce(per_list, ok, list_w, reduce_fn)
