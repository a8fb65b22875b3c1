"""Decision rules' choice functions: which model each prompt goes to (docs/method.md §1).

Both rules work on plain arrays, last axis = models, and are jit/vmap safe. Ties in the
score go to the lowest model index (``jnp.argmax`` semantics); the sweeps reproduce the
same tie-breaking exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def masked_argmax(scores: ArrayLike, where: ArrayLike) -> jax.Array:
    """Index of the largest score among ``where`` (lowest index on ties), over the last axis.

    Correct even when scores are ``-inf``. Rows with no allowed entry give 0; callers decide
    what to do with them.

    Args:
      scores: ``[..., M]`` float scores.
      where: ``[..., M]`` bool mask of allowed entries.

    Returns:
      ``[...]`` int32 indices.
    """
    scores = jnp.asarray(scores)
    where = jnp.asarray(where, bool)
    best = jnp.max(jnp.where(where, scores, -jnp.inf), axis=-1, keepdims=True)
    cand = where & (scores == best)
    return jnp.argmax(cand, axis=-1).astype(jnp.int32)


def budget_choice(scores: ArrayLike, pred_costs: ArrayLike, budget: ArrayLike) -> jax.Array:
    """Budget rule ``π_B(x) = argmax_{m: ĉ(x,m) ≤ B} s(x,m)``.

    When no model is feasible (``B < min_m ĉ(x,m)``) the prompt goes to the model with the
    lowest predicted cost (lowest index on ties), never silently to model 0.

    Args:
      scores: ``[..., N, M]`` router scores (higher is better).
      pred_costs: ``[..., N, M]`` predicted costs.
      budget: scalar or array broadcastable to ``[..., N]`` (per-prompt budget).

    Returns:
      ``[..., N]`` int32 chosen model per prompt.

    >>> import jax.numpy as jnp
    >>> s = jnp.array([[0.9, 0.5, 0.1]]); c = jnp.array([[3.0, 2.0, 1.0]])
    >>> budget_choice(s, c, 2.5).tolist(), budget_choice(s, c, 0.5).tolist()
    ([1], [2])
    """
    scores = jnp.asarray(scores, jnp.float32)
    pred_costs = jnp.asarray(pred_costs, jnp.float32)
    budget = jnp.asarray(budget, jnp.float32)
    feasible = pred_costs <= jnp.broadcast_to(budget, pred_costs.shape[:-1])[..., None]
    choice = masked_argmax(scores, feasible)
    cheapest = jnp.argmin(pred_costs, axis=-1).astype(jnp.int32)
    return jnp.where(jnp.any(feasible, axis=-1), choice, cheapest)


def lambda_choice(scores: ArrayLike, pred_costs: ArrayLike, lam: ArrayLike) -> jax.Array:
    """Willingness-to-pay rule ``π_λ(x) = argmax_m s(x,m) − λ·ĉ(x,m)``.

    Args:
      scores: ``[..., N, M]`` router scores.
      pred_costs: ``[..., N, M]`` predicted costs.
      lam: scalar or array broadcastable to ``[..., N]``.

    Returns:
      ``[..., N]`` int32 chosen model per prompt (lowest index on ties).

    >>> import jax.numpy as jnp
    >>> s = jnp.array([[0.9, 0.5]]); c = jnp.array([[1.0, 0.1]])
    >>> lambda_choice(s, c, 0.0).tolist(), lambda_choice(s, c, 1.0).tolist()
    ([0], [1])
    """
    scores = jnp.asarray(scores, jnp.float32)
    pred_costs = jnp.asarray(pred_costs, jnp.float32)
    lam = jnp.asarray(lam, jnp.float32)
    return jnp.argmax(
        scores - jnp.broadcast_to(lam, scores.shape[:-1])[..., None] * pred_costs, axis=-1
    ).astype(jnp.int32)
