"""High-level evaluation: one router's metrics and curve, and the dataset summary.

Every decision rule of :data:`~jaxroute.routing.rules.RULES` (docs/method.md §1) is
evaluated: the primary (budget) rule's fields sit at the top level of
:func:`evaluate_router`'s result and each other rule's identical fields under its key
(the λ rule's under ``"lambda"``). The λ rule is swept over every breakpoint
(:func:`~jaxroute.routing.grids.lambda_grid`), so its
metrics are exact; its stored curve keeps the points a metric can depend on (every
Pareto-staircase point) plus ``n`` evenly spaced ones for the figures, so every metric
recomputed from the stored curve equals the stored one.

Everything returned is plain Python (floats, ints, lists, ``None``), JSON-able with
``allow_nan=False``: an unreachable cost ratio is ``None`` with
``best_single_reached=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from jax.typing import ArrayLike

from jaxroute.routing import metrics as M
from jaxroute.routing.grids import BudgetSpec, resolve_budgets, thin_curve  # noqa: F401
from jaxroute.routing.metrics import curve_metrics
from jaxroute.routing.reference import (
    best_single_model,
    oracle_choice,
    reference_routers,
    zero_router_result,
)
from jaxroute.routing.rules import PRIMARY, RULES


def _rule_entry(res, choice, q, c, *, strong, best, bounds, empty_quality, top, x_key):
    q64, c64 = q.astype(np.float64), c.astype(np.float64)
    out = curve_metrics(
        res.cost,
        res.quality,
        best_single_quality=float(q64[:, best].mean()),
        best_single_cost=float(c64[:, best].mean()),
        bounds=bounds,
        empty_quality=empty_quality,
    )
    strong_rate = res.shares[:, strong]
    at_c_star = None  # the strong model's call rate where the best single is first reached
    if out["best_single_reached"]:
        hit = np.flatnonzero(
            (res.cost == out["cost_at_best_single"])
            & (res.quality >= float(q64[:, best].mean()) - M.REACH_TOL)
        )
        at_c_star = float(strong_rate[hit].min()) if hit.size else None
    out.update(
        rci=M.rci(choice, q, c),
        strong_call_rate_at_best_single=at_c_star,
        strong_call_rate_at_max_budget=float(strong_rate[top]),
        quality_at_max_budget=float(res.quality[top]),
        cost_at_max_budget=float(res.cost[top]),
        apgr=None,
        cpt50=None,
        strong_model=strong,
        best_single=best,
        bounds=list(bounds),
        curve={
            x_key: res.budget.tolist(),
            "cost": res.cost.tolist(),
            "quality": res.quality.tolist(),
            "strong_call_rate": strong_rate.tolist(),
            "shares": res.shares.tolist(),
        },
    )
    if q.shape[1] == 2:
        weak = 1 - strong
        qw, qs = float(q64[:, weak].mean()), float(q64[:, strong].mean())
        if qs != qw:
            out["apgr"] = M.apgr(strong_rate, res.quality, qw, qs)
            out["cpt50"] = M.cpt(strong_rate, res.quality, qw, qs, 0.5)
            if not np.isfinite(out["cpt50"]):
                out["cpt50"] = None
    return out


def evaluate_router(
    scores: ArrayLike,
    pred_costs: ArrayLike,
    quality: ArrayLike,
    cost: ArrayLike,
    *,
    budgets: BudgetSpec = None,
    strong_model: int | None = None,
    best_single: int | None = None,
    bounds: tuple[float, float] | None = None,
    empty_quality: float | None = 0.0,
    method: str = "events",
    lambda_rule: bool = True,
    lambda_points: int | None = None,
) -> dict[str, Any]:
    """All metrics and the curve of one router under the budget rule and the λ rule.

    Args:
      scores: ``[N, M]`` router scores.
      pred_costs: ``[N, M]`` predicted costs.
      quality: ``[N, M]`` true quality.
      cost: ``[N, M]`` true cost.
      budgets: grid spec (:func:`resolve_budgets`), default ORBIT's.
      strong_model: model whose call rate is tracked (default: the best-quality model
        of the highest mean-cost tier, :data:`metrics.STRONG_MODEL_RULE`).
      best_single: best single model (default: highest mean quality, cheaper on ties).
      bounds: shared ``(L, U)`` for nAUC and AIQ (default :func:`metrics.cost_bounds`).
      empty_quality: see :mod:`jaxroute.routing.metrics`.
      method: sweep method.
      lambda_rule: also evaluate the λ rule (``"lambda"`` entry).
      lambda_points: evenly spaced λ points stored besides the staircase (default: the
        size of the budget grid).

    Returns:
      dict: ``peak``, ``cost_at_best_single``, ``cost_ratio``, ``best_single_reached``,
      ``nauc``, ``aiq``, ``rci``, ``strong_call_rate_at_max_budget``,
      ``strong_call_rate_at_best_single`` (at the C* point; ``None`` if never reached),
      ``quality_at_max_budget``, ``cost_at_max_budget``, ``apgr`` / ``cpt50`` (two-model
      pools, else ``None``), ``curve`` = {``budget``, ``cost``, ``quality``,
      ``strong_call_rate``, ``shares`` (``[B][M]``)}, and the context used
      (``strong_model``, ``best_single``, ``bounds``) — all for the budget rule — and
      ``"lambda"``: the same fields for the λ rule, swept over every breakpoint, with
      ``curve["lambda"]`` in place of ``curve["budget"]`` and "max budget" meaning
      λ = 0 (the best score, lowest index on ties).
    """
    return evaluate_routers(
        np.asarray(scores, np.float32)[None],
        np.asarray(pred_costs, np.float32)[None],
        quality,
        cost,
        budgets=budgets,
        strong_model=strong_model,
        best_single=best_single,
        bounds=bounds,
        empty_quality=empty_quality,
        method=method,
        lambda_rule=lambda_rule,
        lambda_points=lambda_points,
    )[0]


def evaluate_routers(
    scores: ArrayLike,
    pred_costs: ArrayLike,
    quality: ArrayLike,
    cost: ArrayLike,
    *,
    budgets: BudgetSpec = None,
    strong_model: int | None = None,
    best_single: int | None = None,
    bounds: tuple[float, float] | None = None,
    empty_quality: float | None = 0.0,
    method: str = "events",
    lambda_rule: bool = True,
    lambda_points: int | None = None,
) -> list[dict[str, Any]]:
    """:func:`evaluate_router` for R routers on the same prompts, one budget sweep.

    ``scores`` and ``pred_costs`` are ``[R, N, M]``. Each router gets its own budget grid
    from ``budgets`` (ORBIT's differ per router), padded with its last budget to a common
    length for the one ``[R, N, M]`` sweep and cut back after it; the sweep's sums are
    exact, so every router's entry equals its own :func:`evaluate_router` call.

    Returns:
      R dicts, as :func:`evaluate_router`.
    """
    s = np.asarray(scores, np.float32)
    pc = np.asarray(pred_costs, np.float32)
    if s.ndim != 3 or s.shape != pc.shape:
        raise ValueError(f"scores {s.shape} and pred_costs {pc.shape} must both be [R, N, M]")
    q = np.asarray(quality, np.float32)
    c = np.asarray(cost, np.float32)
    strong = M.strong_model(c, q) if strong_model is None else int(strong_model)
    best = best_single_model(q, c) if best_single is None else int(best_single)
    bounds = M.cost_bounds(c) if bounds is None else (float(bounds[0]), float(bounds[1]))
    ctx = dict(strong=strong, best=best, bounds=bounds, empty_quality=empty_quality)
    rules = list(RULES.values()) if lambda_rule else [RULES[PRIMARY]]
    curves, n_points = {}, None
    for rule in rules:  # the primary rule's grid sizes set the others' stored points
        curves[rule.name] = rule.curves(
            s, pc, q, c, budgets=budgets, method=method, n_points=n_points
        )
        if n_points is None:
            n_points = [lambda_points or len(res.budget) for res in curves[rule.name]]
    out = []
    for r in range(s.shape[0]):
        entry: dict[str, Any] = {}
        for rule in rules:
            res = curves[rule.name][r]
            top = rule.top(res.budget)
            choice = rule.choose(s[r], pc[r], res.budget[top])
            fields = _rule_entry(res, choice, q, c, top=top, x_key=rule.param, **ctx)
            if rule.key is None:
                entry.update(fields)
            else:
                entry[rule.key] = fields
        out.append(entry)
    return out


def reference_results(
    quality: ArrayLike, cost: ArrayLike, *, budgets=None, seed: int = 0, model_names=None
) -> dict[str, dict]:
    """Every reference router's per-seed result on one test set (name -> result)."""
    names, scores, pred_costs, extras = reference_routers(
        quality, cost, seed=seed, model_names=model_names
    )
    results = evaluate_routers(scores, pred_costs, quality, cost, budgets=budgets)
    out = {name: {**res, **extras.get(name, {})} for name, res in zip(names, results, strict=True)}
    out["zero_router"] = zero_router_result(quality, cost)
    return out


def dataset_summary(
    quality: ArrayLike,
    cost: ArrayLike,
    model_names: Sequence[str],
    tasks: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The inspect_data fields of a test set, plain Python (JSON-able).

    Args:
      quality: ``[N, M]`` true quality.
      cost: ``[N, M]`` true cost.
      model_names: ``M`` names.
      tasks: ``N`` task names per prompt (optional).

    Returns:
      dict: ``n_prompts``, ``n_models``, ``models``, ``tasks`` (name → count),
      ``mean_quality`` / ``mean_cost`` (model → value), ``top2_tie_share``, ``oracle``
      (``quality``, ``cost``, ``strong_model_share``; ties to the cheapest model),
      ``best_single`` (``model``, ``quality``, ``cost``), plus ``strong_model`` and
      ``cost_bounds`` (``[L, U]``).
    """
    q = np.asarray(quality, np.float32).astype(np.float64)
    c = np.asarray(cost, np.float32).astype(np.float64)
    n, m = q.shape
    names = [str(x) for x in model_names]
    if len(names) != m:
        raise ValueError(f"{len(names)} model names for {m} models")
    mq, mc = q.mean(axis=0), c.mean(axis=0)
    choice = oracle_choice(q, c)
    strong = M.strong_model(c, q)
    best = best_single_model(q, c)
    task_counts: dict[str, int] = {}
    if tasks is not None:
        names_t, counts = np.unique(np.asarray([str(t) for t in tasks]), return_counts=True)
        task_counts = {str(k): int(v) for k, v in zip(names_t, counts, strict=True)}
    return {
        "n_prompts": int(n),
        "n_models": int(m),
        "models": names,
        "tasks": task_counts,
        "mean_quality": {names[j]: float(mq[j]) for j in range(m)},
        "mean_cost": {names[j]: float(mc[j]) for j in range(m)},
        "top2_tie_share": M.top2_tie_share(q),
        "oracle": {
            "quality": float(q[np.arange(n), choice].mean()),
            "cost": float(c[np.arange(n), choice].mean()),
            "strong_model_share": float(np.mean(choice == strong)),
        },
        "best_single": {"model": names[best], "quality": float(mq[best]), "cost": float(mc[best])},
        "strong_model": names[strong],
        "cost_bounds": list(M.cost_bounds(c)),
    }
