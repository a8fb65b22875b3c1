"""Collapse diagnostics: the same evaluation on the training split, and noise injection."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.typing import ArrayLike

from jaxroute.routing.evaluate import evaluate_router
from jaxroute.routing.metrics import strong_model as _strong_model
from jaxroute.routing.sweep import budget_sweep


def collapse_on_train(
    scores_train: ArrayLike,
    pred_costs_train: ArrayLike,
    quality_train: ArrayLike,
    cost_train: ArrayLike,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`evaluate_router` on the training arrays (does the router collapse where it
    was fit?). ``kwargs`` go to :func:`evaluate_router`."""
    return evaluate_router(scores_train, pred_costs_train, quality_train, cost_train, **kwargs)


def noise_injection(
    quality: ArrayLike,
    cost: ArrayLike,
    scales: ArrayLike,
    *,
    seed: int = 0,
    tie_break: float = 1e-6,
    budget: float | None = None,
    strong_model: int | None = None,
) -> dict[str, np.ndarray]:
    """Oracle scores plus Gaussian noise of growing scale, at the largest budget.

    Scores are ``y[i,m] − tie_break · r[i,m] / M + σ·ε`` with ``r`` the model's cost rank
    within the prompt (0 = cheapest), so ``σ = 0`` is the cost-aware oracle whenever
    distinct qualities differ by more than ``tie_break``; ``ε ~ N(0, 1)`` from
    ``jax.random.key(seed)``. Predicted costs are the true costs and the budget defaults to
    ``max c`` (every model feasible). All scales run as routers of one sweep.

    Args:
      quality: ``[N, M]`` true quality.
      cost: ``[N, M]`` true cost.
      scales: ``[S]`` noise standard deviations.
      seed: noise seed.
      tie_break: size of the cost tie-break in the base scores.
      budget: the budget (default: the largest true cost).
      strong_model: tracked model (default: largest mean cost).

    Returns:
      dict of ``[S]`` arrays: ``scale``, ``strong_call_rate``, ``quality``, ``cost``.
    """
    q = np.asarray(quality, np.float32)
    c = np.asarray(cost, np.float32)
    n, m = q.shape
    sig = np.atleast_1d(np.asarray(scales, np.float32))
    rank = np.argsort(np.argsort(c, axis=1, kind="stable"), axis=1, kind="stable")
    base = q - np.float32(tie_break) * rank.astype(np.float32) / m
    eps = np.asarray(jax.random.normal(jax.random.key(seed), (sig.size, n, m)), np.float32)
    scores = base[None] + sig[:, None, None] * eps
    pcs = np.broadcast_to(c, scores.shape)
    b = float(c.max()) if budget is None else float(budget)
    res = budget_sweep(scores, pcs, q, c, np.array([b]))
    strong = _strong_model(c) if strong_model is None else int(strong_model)
    return {
        "scale": sig.astype(np.float64),
        "strong_call_rate": res.shares[:, 0, strong],
        "quality": res.quality[:, 0],
        "cost": res.cost[:, 0],
    }
