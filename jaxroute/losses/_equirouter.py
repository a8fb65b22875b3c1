"""The EquiRouter objective (docs/method.md §3): MSE + rank_weight · pairwise logistic."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxroute.losses._pairwise import pairwise_logistic_loss
from jaxroute.losses._pointwise import mse_loss
from jaxroute.losses._utils import ReduceFn


def equirouter_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    rank_weight: float = 50.0,
    tie_break: str | None = None,
    tie_weight: float = 1.0,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn = jnp.mean,
) -> jax.Array:
    r"""EquiRouter's training loss, as in the reference implementation.

    .. math:: L = \operatorname{MSE}(s, y) + w \cdot L_{\text{rank}}

    with the MSE a mean over all valid entries of the batch and ``L_rank`` the
    :func:`pairwise_logistic_loss` with ``reduction="global"``: the mean of
    ``softplus(-(s_bi - s_bj))`` over all valid pairs with ``y_bi > y_bj`` (0 when there
    is none). ``tie_break="cost"`` adds the paper's cost tie-break pairs
    (``y_bi == y_bj``, ``c_bi < c_bj``), which the reference code does not use.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities.
      costs: ``[..., M]`` costs; needed only for ``tie_break="cost"``.
      rank_weight: ``w`` (default 50, as the reference).
      tie_break: None (reference) or ``"cost"``.
      tie_weight: weight of a tie-break pair relative to a strict pair.
      where: optional ``[..., M]`` bool mask.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` (reference) or ``jnp.sum``; None is not supported.

    Returns:
      The scalar loss.

    >>> s, y = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0])
    >>> # MSE = 0.5, one pair with s_i - s_j = 0: 0.5 + 50 * log 2
    >>> print(round(float(equirouter_loss(s, y)), 4))
    35.1574
    """
    if reduce_fn is None:
        raise ValueError("equirouter_loss needs a reduction (jnp.mean or jnp.sum).")
    mse = mse_loss(scores, labels, where=where, weights=weights, reduce_fn=reduce_fn)
    rank = pairwise_logistic_loss(
        scores,
        labels,
        costs=costs,
        tie_break=tie_break,
        tie_weight=tie_weight,
        where=where,
        weights=weights,
        reduction="global",
        reduce_fn=reduce_fn,
    )
    return mse + rank_weight * rank
