"""High-level evaluation: one router's metrics and curve, and the dataset summary.

Both decision rules (METHOD.md §1) are evaluated: the budget rule's fields sit at the top
level of :func:`evaluate_router`'s result and the λ rule's identical fields under
``"lambda"``. The λ rule is swept over every breakpoint (:func:`lambda_grid`), so its
metrics are exact; its stored curve keeps the points a metric can depend on (every
Pareto-staircase point) plus ``n`` evenly spaced ones for the figures, so every metric
recomputed from the stored curve equals the stored one.

Everything returned is plain Python (floats, ints, lists, ``None``), JSON-able with
``allow_nan=False``: an unreachable cost ratio is ``None`` with
``best_single_reached=False``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from jax.typing import ArrayLike

from jaxroute.routing import metrics as M
from jaxroute.routing.reference import best_single_model, oracle_choice
from jaxroute.routing.rules import budget_choice
from jaxroute.routing.sweep import (
    SweepResult,
    budget_sweep,
    lambda_grid,
    lambda_sweep,
    log_budget_grid,
    orbit_budget_grid,
)

BudgetSpec = None | str | tuple | Mapping | ArrayLike


def resolve_budgets(spec: BudgetSpec, pred_costs: ArrayLike, cost: ArrayLike) -> np.ndarray:
    """Budget grid from a spec.

    Args:
      spec: ``None`` or ``"orbit"`` (ORBIT's 100 quantiles of the router's predicted
        costs), ``("orbit", n)``, ``"log"`` / ``("log", n)`` / ``{"kind": "log", "n": n}``
        (shared log grid between the cheapest and dearest mean true cost, default 100),
        or an explicit ``[B]`` array.
      pred_costs: ``[N, M]`` the router's predicted costs.
      cost: ``[N, M]`` true costs.

    Returns:
      ``[B]`` float64 ascending budgets.
    """
    if isinstance(spec, Mapping):
        spec = (spec.get("kind", "orbit"), spec.get("n", 100))
    if spec is None or isinstance(spec, str):
        spec = ("orbit" if spec is None else spec, 100)
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        kind, n = spec
        if kind == "orbit":
            return orbit_budget_grid(pred_costs, int(n))
        if kind == "log":
            return log_budget_grid(cost, int(n))
        raise ValueError(f"unknown budget grid kind {kind!r}")
    return np.sort(np.atleast_1d(np.asarray(spec, np.float64)))


def curve_metrics(
    cost: ArrayLike,
    quality: ArrayLike,
    *,
    best_single_quality: float,
    best_single_cost: float,
    bounds: tuple[float, float],
    empty_quality: float | None = 0.0,
) -> dict[str, Any]:
    """Curve-only metrics (peak, C*, CR, nAUC, AIQ) of operating points ``[B]``.

    Returns:
      dict with ``peak``, ``cost_at_best_single`` (``None`` if never reached),
      ``cost_ratio`` (``None`` if never reached), ``best_single_reached``, ``nauc``,
      ``aiq``.
    """
    low, high = bounds
    c_star = M.cost_at_quality(cost, quality, best_single_quality)
    reached = bool(np.isfinite(c_star))
    return {
        "peak": M.peak_score(quality),
        "cost_at_best_single": float(c_star) if reached else None,
        "cost_ratio": M.cost_ratio(c_star, best_single_cost) if reached else None,
        "best_single_reached": reached,
        "nauc": M.nauc(cost, quality, low, high, empty_quality=empty_quality),
        "aiq": M.aiq(cost, quality, low, high, empty_quality=empty_quality),
    }


def _staircase_index(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Indices of the Pareto-staircase points (:func:`metrics.pareto_staircase`)."""
    order = np.lexsort((-quality, cost))
    q = quality[order]
    prev_best = np.concatenate([[-np.inf], np.maximum.accumulate(q)[:-1]])
    return order[q > prev_best]


def thin_curve(cost: ArrayLike, quality: ArrayLike, n_points: int) -> np.ndarray:
    """Indices (ascending) of a curve's points worth storing: ``n_points`` evenly spaced
    ones (first and last included) and every Pareto-staircase point, so peak, C*, CR,
    nAUC and AIQ computed from the kept points equal those of the whole curve."""
    c = np.asarray(cost, np.float64)
    q = np.asarray(quality, np.float64)
    even = np.linspace(0, c.size - 1, max(2, int(n_points))).round().astype(int)
    return np.unique(np.concatenate([even, _staircase_index(c, q)]))


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
      strong_model: model whose call rate is tracked (default: largest mean cost).
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
    grids = [resolve_budgets(budgets, pc[r], c) for r in range(s.shape[0])]
    width = max(g.size for g in grids)
    padded = np.stack([np.concatenate([g, np.repeat(g[-1:], width - g.size)]) for g in grids])
    swept = budget_sweep(s, pc, q, c, padded, method=method)
    strong = M.strong_model(c) if strong_model is None else int(strong_model)
    best = best_single_model(q, c) if best_single is None else int(best_single)
    bounds = M.cost_bounds(c) if bounds is None else (float(bounds[0]), float(bounds[1]))
    ctx = dict(strong=strong, best=best, bounds=bounds, empty_quality=empty_quality)
    out = []
    for r, grid in enumerate(grids):
        res = SweepResult(*(a[r, : grid.size] for a in swept))
        top = int(np.argmax(res.budget))
        choice = np.asarray(budget_choice(s[r], pc[r], np.float32(res.budget[top])))
        entry = _rule_entry(res, choice, q, c, top=top, x_key="budget", **ctx)
        if lambda_rule:
            lres = lambda_sweep(s[r], pc[r], q, c, lambda_grid(s[r], pc[r]))
            keep = thin_curve(lres.cost, lres.quality, lambda_points or len(grid))
            lres = type(lres)(*(a[keep] for a in lres))
            zero = np.argmax(s[r], axis=1)  # the rule at λ = 0
            entry["lambda"] = _rule_entry(lres, zero, q, c, top=0, x_key="lambda", **ctx)
        out.append(entry)
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
    strong = M.strong_model(c)
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
