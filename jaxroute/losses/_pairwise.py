"""Pairwise losses (RankNet logistic, hinge), with optional cost tie-breaking."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxroute.losses._utils import ReduceFn, list_weights, prepare, safe_reduce

_REDUCTIONS = ("global", "per_list")


def pair_masks(
    labels: jax.Array,
    where: jax.Array,
    costs: jax.Array | None,
    tie_break: str | None,
) -> tuple[jax.Array, jax.Array]:
    """``[..., M, M]`` masks: strict pairs ``y_i > y_j`` and tie-break pairs.

    Tie-break pairs (only with ``tie_break="cost"``) have ``y_i == y_j`` and
    ``c_i < c_j``: the cheaper of two equally good models must rank higher.
    """
    if tie_break not in (None, "cost"):
        raise ValueError(f"tie_break must be None or 'cost'; got {tie_break!r}.")
    if tie_break == "cost" and costs is None:
        raise ValueError("tie_break='cost' needs costs=[..., M]; got costs=None.")
    both = where[..., :, None] & where[..., None, :]
    strict = both & (labels[..., :, None] > labels[..., None, :])
    if tie_break == "cost":
        ties = (
            both
            & (labels[..., :, None] == labels[..., None, :])
            & (costs[..., :, None] < costs[..., None, :])
        )
    else:
        ties = jnp.zeros_like(strict)
    return strict, ties


def _pairwise(
    pair_fn: Callable[[jax.Array], jax.Array],
    scores: ArrayLike,
    labels: ArrayLike,
    costs: ArrayLike | None,
    tie_break: str | None,
    tie_weight: float,
    where: ArrayLike | None,
    weights: ArrayLike | None,
    reduction: str,
    reduce_fn: ReduceFn | None,
) -> jax.Array:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}; got {reduction!r}.")
    scores, labels, costs, where = prepare(scores, labels, costs, where)
    strict, ties = pair_masks(labels, where, costs, tie_break)
    diff = scores[..., :, None] - scores[..., None, :]  # s_i - s_j
    pair_loss = pair_fn(diff)
    pair_w = jnp.where(strict, 1.0, 0.0) + jnp.where(ties, tie_weight, 0.0)
    pair_w = pair_w.astype(scores.dtype)
    list_w = list_weights(weights, scores.shape[:-1], scores.dtype)
    valid = strict | ties
    if reduction == "global":
        return safe_reduce(pair_loss, valid, pair_w * list_w[..., None, None], reduce_fn)
    # per_list: weighted mean over the pairs of each prompt, then over prompts with pairs.
    total_w = jnp.sum(jnp.where(valid, pair_w, 0.0), axis=(-2, -1))
    per_list = jnp.sum(jnp.where(valid, pair_loss * pair_w, 0.0), axis=(-2, -1))
    per_list = per_list / jnp.where(total_w > 0, total_w, 1.0)
    return safe_reduce(per_list, total_w > 0, list_w, reduce_fn)


def pairwise_logistic_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    tie_break: str | None = None,
    tie_weight: float = 1.0,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduction: str = "global",
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""RankNet pairwise logistic loss.

    .. math:: \ell = \frac{\sum_{(b,i,j) \in P} \operatorname{softplus}(-(s_{bi} - s_{bj}))
        + \tau \sum_{(b,i,j) \in T} \operatorname{softplus}(-(s_{bi} - s_{bj}))}
        {|P| + \tau |T|}

    with ``P`` the valid pairs with ``y_bi > y_bj`` and ``T`` (only for
    ``tie_break="cost"``) the pairs with ``y_bi == y_bj`` and ``c_bi < c_bj``, weighted by
    ``tau = tie_weight``. ``reduction="global"`` is the reference EquiRouter (docs/method.md §3):
    one mean over all valid pairs of the batch, 0 when there is none. ``"per_list"``
    averages the pairs of each prompt, then the prompts that have at least one pair.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities.
      costs: ``[..., M]`` costs; needed only for ``tie_break="cost"``.
      tie_break: None, or ``"cost"`` to add the cost tie-break pairs.
      tie_weight: weight of a tie-break pair relative to a strict pair (default 1.0).
      where: optional ``[..., M]`` bool mask; pairs with a masked member are excluded.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduction: ``"global"`` or ``"per_list"``.
      reduce_fn: ``jnp.mean`` (the weighted mean above), ``jnp.sum``, or None for the
        unreduced ``[..., M, M]`` pair losses (global) or ``[...]`` list losses (per_list).

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    Raises:
      ValueError: for ``tie_break="cost"`` without costs, or an unknown option.

    >>> s, y = jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0])
    >>> print(round(float(pairwise_logistic_loss(s, y)), 4))  # (log 2 + softplus(1)) / 2
    1.0032
    >>> c = jnp.array([3.0, 2.0, 1.0])
    >>> print(round(float(pairwise_logistic_loss(s, y, costs=c, tie_break="cost")), 4))
    0.7732
    """
    return _pairwise(
        lambda d: jax.nn.softplus(-d),
        scores, labels, costs, tie_break, tie_weight, where, weights, reduction, reduce_fn,
    )  # fmt: skip


def pairwise_hinge_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    tie_break: str | None = None,
    tie_weight: float = 1.0,
    margin: float = 1.0,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduction: str = "global",
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Pairwise hinge loss, ``max(0, margin - (s_i - s_j))`` over preferred pairs.

    Same pairs, tie-break, masking and reductions as :func:`pairwise_logistic_loss`.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities.
      costs: ``[..., M]`` costs; needed only for ``tie_break="cost"``.
      tie_break: None or ``"cost"``.
      tie_weight: weight of a tie-break pair (default 1.0).
      margin: the hinge margin (default 1.0).
      where: optional ``[..., M]`` bool mask.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduction: ``"global"`` or ``"per_list"``.
      reduce_fn: as in :func:`pairwise_logistic_loss`.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> s, y = jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0])
    >>> print(round(float(pairwise_hinge_loss(s, y)), 4))  # (1 + 2) / 2
    1.5
    """
    return _pairwise(
        lambda d: jax.nn.relu(margin - d),
        scores, labels, costs, tie_break, tie_weight, where, weights, reduction, reduce_fn,
    )  # fmt: skip
