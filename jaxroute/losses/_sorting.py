"""Differentiable sorting: NeuralSort and SoftSort relaxed permutations, and their losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxroute.losses._utils import (
    ReduceFn,
    informative,
    list_weights,
    masked_log_softmax,
    prepare,
    safe_reduce,
    tie_groups,
    true_order,
)


def _hard_permutation(scores: jax.Array, where: jax.Array) -> jax.Array:
    """``[..., M, M]`` one-hot rows: row i = the i-th highest valid score, masked last."""
    order = true_order(scores, where)
    return jax.nn.one_hot(order, scores.shape[-1], dtype=scores.dtype)


def _row_col_masks(where: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Valid rows (the first n positions) and the ``[..., M, M]`` valid-column mask."""
    m = where.shape[-1]
    n = jnp.sum(where, axis=-1, keepdims=True)
    rows = jnp.broadcast_to(jnp.arange(m), where.shape) < n  # [..., M]
    cols = jnp.broadcast_to(where[..., None, :], where.shape + (m,))
    return rows, cols


def _neuralsort_logits(scores: jax.Array, tau: float, where: jax.Array) -> jax.Array:
    """NeuralSort logits ``((n + 1 - 2i) s_j - sum_k |s_j - s_k|) / tau`` over valid items."""
    m = scores.shape[-1]
    n = jnp.sum(where, axis=-1, keepdims=True).astype(scores.dtype)  # [..., 1]
    pair = where[..., :, None] & where[..., None, :]
    abs_diff = jnp.where(pair, jnp.abs(scores[..., :, None] - scores[..., None, :]), 0.0)
    row_sum = jnp.sum(abs_diff, axis=-1)  # [..., M] = A_s 1
    i = jnp.broadcast_to(jnp.arange(1, m + 1, dtype=scores.dtype), scores.shape)
    coef = n + 1.0 - 2.0 * i  # [..., M]
    return (coef[..., :, None] * scores[..., None, :] - row_sum[..., None, :]) / tau


def _softsort_logits(scores: jax.Array, tau: float, where: jax.Array) -> jax.Array:
    """SoftSort logits ``-|sort(s)_i - s_j| / tau`` (descending sort, valid items first)."""
    big = jnp.where(where, scores, jnp.inf)
    low = jax.lax.stop_gradient(jnp.min(big, axis=-1, keepdims=True))
    low = jnp.where(jnp.isfinite(low), low, 0.0) - 1.0
    filled = jnp.where(where, scores, low)
    sorted_desc = -jnp.sort(-filled, axis=-1)
    return -jnp.abs(sorted_desc[..., :, None] - filled[..., None, :]) / tau


def _relaxed(logits: jax.Array, scores: jax.Array, where: jax.Array, hard: bool) -> jax.Array:
    rows, cols = _row_col_masks(where)
    soft = jnp.exp(masked_log_softmax(logits, cols))
    soft = jnp.where(cols, soft, 0.0)
    hard_p = _hard_permutation(jax.lax.stop_gradient(scores), where)
    # Positions past the valid items hold the masked models in index order (constant).
    soft = jnp.where(rows[..., :, None], soft, hard_p)
    if hard:
        return soft + jax.lax.stop_gradient(hard_p - soft)
    return soft


def neuralsort(
    scores: ArrayLike, tau: float, *, hard: bool = False, where: ArrayLike | None = None
) -> jax.Array:
    r"""NeuralSort relaxed permutation matrix (Grover et al., 2019).

    .. math:: \hat P_{i,:} = \operatorname{softmax}\big(((n + 1 - 2i)\, s
        - A_s \mathbf{1}) / \tau\big), \quad A_s[j,k] = |s_j - s_k|

    Row ``i`` (0-based here) is a soft one-hot of the model with the ``i``-th highest
    score; rows sum to 1 (the matrix is unimodal row-stochastic, not doubly stochastic).
    Masked models (``where`` False) take the last rows as a constant one-hot and get
    zero weight in the valid rows.

    Args:
      scores: ``[..., M]`` scores.
      tau: temperature > 0; as ``tau -> 0`` the matrix tends to the hard permutation.
      hard: straight-through: the forward value is the exact permutation, the gradient
        is that of the relaxation.
      where: optional ``[..., M]`` bool mask.

    Returns:
      ``[..., M, M]`` relaxed permutation matrix.

    >>> p = neuralsort(jnp.array([0.0, 2.0, 1.0]), 0.01)
    >>> print(jnp.round(p).astype(int))
    [[0 1 0]
     [0 0 1]
     [1 0 0]]
    """
    scores = jnp.asarray(scores)
    scores, _, _, where = prepare(scores, jnp.zeros_like(scores), None, where)
    return _relaxed(_neuralsort_logits(scores, tau, where), scores, where, hard)


def softsort(
    scores: ArrayLike, tau: float, *, hard: bool = False, where: ArrayLike | None = None
) -> jax.Array:
    r"""SoftSort relaxed permutation matrix (Prillo & Eisenschlos, 2020).

    .. math:: \hat P_{i,:} = \operatorname{softmax}\big(-|\operatorname{sort}(s)_i - s| /
        \tau\big)

    with ``sort`` descending. Row ``i`` is a soft one-hot of the model with the ``i``-th
    highest score; rows sum to 1. Masking as in :func:`neuralsort`.

    Args:
      scores: ``[..., M]`` scores.
      tau: temperature > 0.
      hard: straight-through (forward = exact permutation, relaxation's gradient).
      where: optional ``[..., M]`` bool mask.

    Returns:
      ``[..., M, M]`` relaxed permutation matrix.

    >>> p = softsort(jnp.array([0.0, 2.0, 1.0]), 0.01)
    >>> print(jnp.round(p).astype(int))
    [[0 1 0]
     [0 0 1]
     [1 0 0]]
    """
    scores = jnp.asarray(scores)
    scores, _, _, where = prepare(scores, jnp.zeros_like(scores), None, where)
    return _relaxed(_softsort_logits(scores, tau, where), scores, where, hard)


def _permutation_ce(
    logits: jax.Array,
    labels: jax.Array,
    costs: jax.Array | None,
    where: jax.Array,
    weights: ArrayLike | None,
    reduce_fn: ReduceFn | None,
) -> jax.Array:
    """Mean over valid rows of the cross-entropy against the (tie-aware) true order."""
    rows, cols = _row_col_masks(where)
    log_p = masked_log_softmax(logits, cols)  # [..., M, M]
    order = true_order(labels, where, costs)  # [..., M]
    groups = tie_groups(labels, where, costs)  # [..., M, M]
    # Target row i: uniform over the models tied with the i-th model of the true order.
    target = jnp.take_along_axis(groups, order[..., :, None], axis=-2).astype(logits.dtype)
    target = target / jnp.maximum(jnp.sum(target, axis=-1, keepdims=True), 1.0)
    row_ce = -jnp.sum(target * log_p, axis=-1)  # [..., M]
    n = jnp.sum(rows, axis=-1)
    per_list = jnp.sum(jnp.where(rows, row_ce, 0.0), axis=-1) / jnp.maximum(n, 1)
    ok = informative(labels, where, costs)
    list_w = list_weights(weights, labels.shape[:-1], logits.dtype)
    return safe_reduce(per_list, ok, list_w, reduce_fn)


def neuralsort_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    tau: float = 1.0,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Permutation cross-entropy of the NeuralSort relaxation against the true order.

    .. math:: \ell_b = -\frac1n \sum_{i=1}^{n} \sum_j P^{*}_{ij} \log \hat P_{ij}

    with ``n`` the valid models and ``P*`` the true order: labels descending, ties broken
    by lower cost when ``costs`` are given. Models still tied (equal label, and equal cost
    if given) share a row target uniformly, so their relative order is not penalised.
    Lists with no two valid models that differ give 0 and are left out of the mean.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities.
      costs: optional ``[..., M]`` costs used to break label ties.
      tau: NeuralSort temperature (default 1.0).
      where: optional ``[..., M]`` bool mask; masked models are not ranked.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` over informative lists, ``jnp.sum``, or None for ``[...]``.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> s, y = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
    >>> print(round(float(neuralsort_loss(s, y)), 4))  # every row uniform: log 2
    0.6931
    """
    scores, labels, costs, where = prepare(scores, labels, costs, where)
    return _permutation_ce(
        _neuralsort_logits(scores, tau, where), labels, costs, where, weights, reduce_fn
    )


def softsort_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    tau: float = 0.1,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Permutation cross-entropy of the SoftSort relaxation against the true order.

    Same target, masking and reduction as :func:`neuralsort_loss`, with
    ``log P̂_{i,:} = log_softmax(-|sort(s)_i - s| / tau)``.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities.
      costs: optional ``[..., M]`` costs used to break label ties.
      tau: SoftSort temperature (default 0.1).
      where: optional ``[..., M]`` bool mask.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` over informative lists, ``jnp.sum``, or None for ``[...]``.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> s, y = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
    >>> print(round(float(softsort_loss(s, y)), 4))
    0.6931
    """
    scores, labels, costs, where = prepare(scores, labels, costs, where)
    return _permutation_ce(
        _softsort_logits(scores, tau, where), labels, costs, where, weights, reduce_fn
    )
