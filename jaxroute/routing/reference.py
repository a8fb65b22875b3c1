"""Reference routers (METHOD.md §2), as scores / predicted costs for the same sweep.

Each returns ``(scores, pred_costs)`` float32 ``[N, M]`` arrays, except the zero router,
which is a curve (the convex hull of the single-model points).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.typing import ArrayLike

from jaxroute.routing.metrics import _upper_hull, pareto_staircase


def _qc(quality, cost):
    return (
        np.asarray(quality, np.float32).astype(np.float64),
        np.asarray(cost, np.float32).astype(np.float64),
    )


def oracle_router(quality: ArrayLike, cost: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Oracle: best true quality, ties broken by lowest cost (then lowest index).

    Scores are exact integers ``M − rank`` in the order (quality desc, cost asc, index);
    predicted costs are the true costs, so under the budget rule the oracle picks, per
    prompt, the best model it can afford.

    Returns:
      ``(scores, pred_costs)``, ``[N, M]`` float32.

    >>> s, _ = oracle_router([[1.0, 1.0, 0.0]], [[2.0, 1.0, 0.5]])
    >>> s.tolist()
    [[2.0, 3.0, 1.0]]
    """
    q, c = _qc(quality, cost)
    n, m = q.shape
    idx = np.broadcast_to(np.arange(m), (n, m))
    order = np.lexsort((idx, c, -q), axis=-1)
    scores = np.empty((n, m), np.float32)
    np.put_along_axis(scores, order, np.arange(m, 0, -1, dtype=np.float32)[None, :], axis=1)
    return scores, np.asarray(cost, np.float32)


def oracle_choice(quality: ArrayLike, cost: ArrayLike) -> np.ndarray:
    """``[N]`` oracle model per prompt (best quality, cheapest on ties)."""
    scores, _ = oracle_router(quality, cost)
    return np.argmax(scores, axis=1)


def single_model_router(model: int, n_prompts: int, n_models: int):
    """Always ``model``: one-hot scores, predicted cost 0 for it and 1 for the others
    (so it is also the fallback below every budget)."""
    scores = np.zeros((n_prompts, n_models), np.float32)
    scores[:, model] = 1.0
    return scores, 1.0 - scores


def best_single_model(quality: ArrayLike, cost: ArrayLike) -> int:
    """Model of highest mean quality; ties to the lower mean cost, then lower index."""
    q, c = _qc(quality, cost)
    mq, mc = q.mean(axis=0), c.mean(axis=0)
    return int(np.lexsort((np.arange(mq.size), mc, -mq))[0])


def cheapest_model(cost: ArrayLike) -> int:
    """Model of lowest mean cost (lowest index on ties)."""
    return int(np.argmin(np.asarray(cost, np.float32).astype(np.float64).mean(axis=0)))


def random_router(
    quality: ArrayLike, cost: ArrayLike, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random router: uniform random scores from ``jax.random.key(seed)`` and the true
    costs as predicted costs, i.e. a random affordable model at each budget."""
    n, m = np.shape(quality)
    scores = jax.random.uniform(jax.random.key(seed), (n, m))
    return np.asarray(scores, np.float32), np.asarray(cost, np.float32)


def zero_router(quality: ArrayLike, cost: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Zero router: the non-decreasing upper convex hull of the single-model points
    ``(mean cost, mean quality)`` (reachable by mixing two models at random).

    Returns:
      ``(cost, quality)`` hull vertices, float64, increasing.

    >>> c, q = zero_router([[0.5, 0.6, 1.0]], [[1.0, 2.0, 3.0]])
    >>> c.tolist(), q.tolist()
    ([1.0, 3.0], [0.5, 1.0])
    """
    q, c = _qc(quality, cost)
    sc, sq = pareto_staircase(c.mean(axis=0), q.mean(axis=0))
    return _upper_hull(sc, sq)
