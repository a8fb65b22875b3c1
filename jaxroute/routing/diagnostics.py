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
      strong_model: tracked model (default: :func:`metrics.strong_model`).

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
    strong = _strong_model(c, q) if strong_model is None else int(strong_model)
    return {
        "scale": sig.astype(np.float64),
        "strong_call_rate": res.shares[:, 0, strong],
        "quality": res.quality[:, 0],
        "cost": res.cost[:, 0],
    }


def task_diagnostics(
    quality: ArrayLike,
    tasks: ArrayLike,
    models: list[str],
    strong: int,
    features: ArrayLike | None = None,
    sample_ids: ArrayLike | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per task: top-2 tie share, oracle and strong-model quality, the best model and,
    with ``features``, the mean within-task cosine similarity (1.0: every prompt of the
    task looks the same to a router).

    A feature row of norm 0 has no direction: it is left out of the cosine (with a
    warning naming its sample id), and a task with no other rows gets ``None``, never
    NaN, so the JSON stays valid.

    Returns:
      ``(per_task, warnings)``: a dict task -> entry, and warning lines for the caller.
    """
    q_all = np.asarray(quality, np.float64)
    tasks = np.asarray(tasks)
    warnings = []
    norms = None
    if features is not None:
        feats = np.asarray(features, np.float64)
        norms = np.linalg.norm(feats, axis=1)
        zero = np.flatnonzero(norms == 0)
        if zero.size:
            ids = np.arange(len(feats)) if sample_ids is None else np.asarray(sample_ids)
            warnings.append(
                f"features: {zero.size} all-zero row(s) left out of the within-task cosine "
                f"(first: sample id '{ids[zero[0]]}', row {zero[0]})"
            )
    out = {}
    for task in dict.fromkeys(tasks.tolist()):
        rows = tasks == task
        q = q_all[rows]
        s = np.sort(q, axis=1)
        entry = {
            "n": int(rows.sum()),
            "top2_tie_share": float((s[:, -1] == s[:, -2]).mean()),
            "oracle_quality": float(q.max(1).mean()),
            "strong_model_quality": float(q[:, strong].mean()),
            "best_model": models[int(q.mean(0).argmax())],
        }
        if norms is not None:
            keep = rows & (norms > 0)
            if keep.any():
                x = feats[keep] / norms[keep, None]
                centroid = x.mean(0)
                entry["mean_within_task_cosine"] = float(centroid @ centroid)
            else:
                entry["mean_within_task_cosine"] = None
                warnings.append(f"task '{task}': every feature row is zero; cosine is null")
        out[str(task)] = entry
    return out, warnings
