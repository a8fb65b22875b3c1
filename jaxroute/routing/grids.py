"""Parameter grids of the sweeps: ORBIT's and the log budget grids, every λ breakpoint.

The λ rule's events (:func:`lambda_events`): for one prompt, ``s_m − λ·ĉ_m`` is a line
in λ and the rule's choice follows the upper envelope of the ``M`` lines (see
:mod:`jaxroute.routing.sweep`); :func:`lambda_grid` lists every breakpoint, so a sweep
over it holds every operating point the rule can reach.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from jax.typing import ArrayLike


def orbit_budget_grid(pred_costs: ArrayLike, n_quantiles: int = 100) -> np.ndarray:
    """ORBIT's budget grid: unique predicted costs over the test set, reduced to quantiles.

    Args:
      pred_costs: ``[..., N, M]`` predicted costs of one router.
      n_quantiles: number of quantiles kept (``np.quantile`` linear interpolation at
        ``linspace(0, 1, n_quantiles)``) when there are more unique values than this.

    Returns:
      ``[B]`` float64 ascending budgets (``B ≤ n_quantiles``).

    >>> orbit_budget_grid([[1.0, 2.0], [2.0, 3.0]], n_quantiles=100).tolist()
    [1.0, 2.0, 3.0]
    """
    u = np.unique(np.asarray(pred_costs, np.float32).astype(np.float64).ravel())
    u = u[np.isfinite(u)]
    if u.size <= n_quantiles:
        return u
    return np.quantile(u, np.linspace(0.0, 1.0, n_quantiles))


def log_budget_grid(
    cost: ArrayLike,
    n_budgets: int = 100,
    *,
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """Shared log-spaced grid from the cheapest to the dearest model's mean true cost.

    Args:
      cost: ``[N, M]`` true costs (the same grid then serves every router).
      n_budgets: grid size (any ``≥ 1``; one budget gives ``[high]``).
      low: override of the lower end (default ``min_m mean_i c[i, m]``, floored at 1e-12
        so the log grid exists when a model is free).
      high: override of the upper end (default ``max_m mean_i c[i, m]``).

    Returns:
      ``[n_budgets]`` float64 ascending budgets.
    """
    mean = np.asarray(cost, np.float64).mean(axis=0)
    lo = float(mean.min()) if low is None else float(low)
    hi = float(mean.max()) if high is None else float(high)
    lo = max(lo, 1e-12)
    hi = max(hi, lo)  # every model free: one point
    if n_budgets == 1:
        return np.array([hi])
    return np.geomspace(lo, hi, n_budgets)


_ENVELOPE_ROWS = 4096  # prompts per host chunk of the [N, M, M] crossing table


def lambda_events(scores: np.ndarray, pred_costs: np.ndarray):
    """Events of the λ rule for one router, on the host in float64.

    For prompt ``i`` model ``m`` is chosen on ``[lo_m, hi_m)``: ``hi_m`` the smallest
    crossing ``(s_m − s_k)/(ĉ_m − ĉ_k)`` with a cheaper ``k``, ``lo_m`` the largest with a
    dearer one; a model beaten by an equal-cost one (higher score, or the same score and
    a lower index) is never chosen. Each crossing is computed once per pair, so one
    model's ``hi`` is bit for bit the next one's ``lo``. Float64 on float32 inputs: the
    differences are exact and the quotient is rounded once, so breakpoints of different
    prompts are ordered correctly unless they agree to ~1e-16.

    Returns:
      ``(t, from_m, to_m, base)``: ``[N, M−1]`` float64 event times (``+inf`` pads) and
      int32 models (the choice moves from ``from_m`` to ``to_m`` at ``t``), and ``[N]``
      the choice before the first event.
    """
    n, m = scores.shape
    idx = np.arange(m)
    lo = np.empty((n, m))
    on = np.empty((n, m), bool)
    for r0 in range(0, n, _ENVELOPE_ROWS):
        s = scores[r0 : r0 + _ENVELOPE_ROWS].astype(np.float64)
        p = pred_costs[r0 : r0 + _ENVELOPE_ROWS].astype(np.float64)
        sa, sb, pa, pb = s[:, :, None], s[:, None, :], p[:, :, None], p[:, None, :]
        same = pa == pb
        with np.errstate(invalid="ignore", divide="ignore"):
            cross = (sa - sb) / np.where(same, 1.0, pa - pb)
        hi = np.min(np.where(pb < pa, cross, np.inf), axis=2)
        lo_c = np.max(np.where(pb > pa, cross, -np.inf), axis=2)
        beaten = same & ((sb > sa) | ((sb == sa) & (idx[None, None, :] < idx[None, :, None])))
        lo[r0 : r0 + _ENVELOPE_ROWS] = lo_c
        on[r0 : r0 + _ENVELOPE_ROWS] = (lo_c < hi) & ~beaten.any(axis=2)
    key = np.where(on, lo, np.inf)
    order = np.argsort(key, axis=1, kind="stable").astype(np.int32)  # envelope first
    t = np.take_along_axis(key, order, 1)[:, 1:]
    return t, order[:, :-1], order[:, 1:], order[:, 0]


def lambda_grid(scores: ArrayLike, pred_costs: ArrayLike) -> np.ndarray:
    """Every breakpoint of one router's λ rule, with 0: a λ sweep over this grid holds
    every operating point the rule reaches for ``λ ≥ 0`` (exact, nothing interpolated).

    Args:
      scores: ``[N, M]`` router scores.
      pred_costs: ``[N, M]`` predicted costs.

    Returns:
      ``[B]`` ascending float64 λ values: 0, half the first breakpoint, and every
      per-prompt envelope breakpoint above 0 (at most ``N·(M−1) + 2`` values).

    >>> lambda_grid([[0.9, 0.5]], [[1.0, 0.1]]).round(6).tolist()  # (0.9-0.5)/(1.0-0.1)
    [0.0, 0.222222, 0.444444]
    """
    s = np.asarray(scores, np.float32)
    pc = np.asarray(pred_costs, np.float32)
    if s.ndim != 2 or s.shape != pc.shape:
        raise ValueError(f"scores {s.shape} and pred_costs {pc.shape} must be one [N, M]")
    t = lambda_events(s, pc)[0].ravel()
    t = np.unique(t[np.isfinite(t) & (t > 0)])
    # λ = 0 itself (ties to the lowest index) and a λ inside (0, first breakpoint): the
    # two differ when top scores tie between models of different predicted cost.
    first = t[:1] / 2 if t.size else np.ones(1)
    return np.concatenate([[0.0], first, t])


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
