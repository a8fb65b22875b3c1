"""Metrics on sweep operating points, exactly as docs/method.md §2 (host NumPy, float64).

All curve metrics take the operating points ``cost[B]``, ``quality[B]`` of one router
(any order). Cost comparisons that decide "affordable" use a relative tolerance
``AFFORD_RTOL`` so that a router whose mean cost equals a bound up to rounding counts as
affording it; reachability of the best single model uses ``quality ≥ target − 1e-9``.

Flag (docs/method.md §2, an option): when no point is affordable at a bound, the "best
quality affordable" there is ``empty_quality`` (default 0.0: nothing affordable, no
quality). Pass ``empty_quality=None`` to use the cheapest point's quality instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from jax.typing import ArrayLike

AFFORD_RTOL = 1e-9
REACH_TOL = 1e-9


def _points(cost, quality):
    c = np.asarray(cost, np.float64).ravel()
    q = np.asarray(quality, np.float64).ravel()
    if c.shape != q.shape:
        raise ValueError(f"cost {c.shape} and quality {q.shape} differ")
    ok = np.isfinite(c) & np.isfinite(q)
    return c[ok], q[ok]


def _le(c, x):
    return c <= x + AFFORD_RTOL * max(abs(x), 1e-300)


def pareto_staircase(cost: ArrayLike, quality: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Pareto staircase: points sorted by cost, each kept only if its quality exceeds
    that of every cheaper point (equal-cost points: the best one).

    Args:
      cost: ``[B]`` mean costs.
      quality: ``[B]`` mean qualities.

    Returns:
      ``(cost, quality)`` of the kept points, ``[K]`` float64, cost and quality increasing.

    >>> c, q = pareto_staircase([1.0, 2.0, 3.0, 2.0], [0.5, 0.4, 0.8, 0.6])
    >>> c.tolist(), q.tolist()
    ([1.0, 2.0, 3.0], [0.5, 0.6, 0.8])
    """
    c, q = _points(cost, quality)
    order = np.lexsort((-q, c))
    c, q = c[order], q[order]
    prev_best = np.concatenate([[-np.inf], np.maximum.accumulate(q)[:-1]])
    keep = q > prev_best
    return c[keep], q[keep]


def best_affordable(
    cost: ArrayLike, quality: ArrayLike, budget: float, empty_quality: float | None = 0.0
) -> float:
    """Largest quality among points with mean cost ``≤ budget`` (see module flag)."""
    c, q = _points(cost, quality)
    ok = _le(c, budget)
    if ok.any():
        return float(q[ok].max())
    if empty_quality is None:
        return float(q[np.argmin(c)]) if c.size else 0.0
    return float(empty_quality)


def nauc(
    cost: ArrayLike,
    quality: ArrayLike,
    low: float,
    high: float,
    *,
    empty_quality: float | None = 0.0,
) -> float:
    """Normalised area under the staircase between shared bounds.

    The curve starts at ``(L, best quality affordable at L)``, runs through the staircase
    points with ``L < C < U`` and ends at ``(U, best quality affordable at U)``;
    ``nAUC = trapz(P, C) / (U − L)``. Use ``L = mean_i min_m c[i,m]``,
    ``U = mean_i max_m c[i,m]`` (:func:`cost_bounds`) for every router.

    Args:
      cost: ``[B]`` mean costs of the operating points.
      quality: ``[B]`` mean qualities.
      low: ``L``.
      high: ``U`` (``> L``).
      empty_quality: quality at a bound where nothing is affordable (module flag).

    Returns:
      nAUC as a float (in quality units).

    >>> nauc([1.0, 2.0], [0.5, 1.0], 1.0, 3.0)
    0.875
    """
    sc, sq = pareto_staircase(cost, quality)
    start = best_affordable(sc, sq, low, empty_quality)
    end = best_affordable(sc, sq, high, empty_quality)
    mid = ~_le(sc, low) & (sc < high - AFFORD_RTOL * abs(high))  # L < C < U
    xs = np.concatenate([[low], sc[mid], [high]])
    ys = np.concatenate([[start], sq[mid], [end]])
    if not high > low:  # every model costs the same per prompt (all free, say)
        return float("nan")
    return float(np.trapezoid(ys, xs) / (high - low))


def _upper_hull(xs, ys):
    """Upper concave hull of points sorted by x (monotone chain)."""
    hull: list[tuple[float, float]] = []
    for p in zip(xs, ys, strict=True):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()  # hull[-1] lies on or below the chord
            else:
                break
        hull.append(p)
    return np.array([h[0] for h in hull]), np.array([h[1] for h in hull])


def convex_hull_curve(
    cost: ArrayLike, quality: ArrayLike, low: float, high: float, *, empty_quality=0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing upper convex hull on ``[low, high]`` (the curve AIQ integrates).

    The hull is taken over the staircase points inside ``[low, high]`` plus the anchors
    ``(low, best affordable at low)`` and ``(high, best affordable at high)``; since the
    right anchor holds the largest affordable quality, the hull is non-decreasing.

    Returns:
      ``(cost, quality)`` hull vertices, float64, from ``low`` to ``high``.
    """
    sc, sq = pareto_staircase(cost, quality)
    start = best_affordable(sc, sq, low, empty_quality)
    end = best_affordable(sc, sq, high, empty_quality)
    inside = (sc > low) & (sc < high)
    xs = np.concatenate([[low], sc[inside], [high]])
    ys = np.concatenate([[start], sq[inside], [end]])
    return _upper_hull(xs, ys)


def aiq(
    cost: ArrayLike,
    quality: ArrayLike,
    low: float,
    high: float,
    *,
    empty_quality: float | None = 0.0,
) -> float:
    """RouterBench's AIQ on a shared cost range.

    ``AIQ = ∫_low^high h(c) dc / (high − low)`` with ``h`` the non-decreasing upper convex
    hull of the points (:func:`convex_hull_curve`). Normalisation: divided by the shared
    cost range ``high − low`` (default ``[L, U]`` of :func:`cost_bounds`, the same for
    every router on a test set), so AIQ is in quality units and ``AIQ ≥ nAUC``.

    >>> aiq([1.0, 2.0, 3.0], [0.5, 0.6, 1.0], 1.0, 3.0)
    0.75
    """
    if not high > low:  # undefined on an empty cost range, as nAUC
        return float("nan")
    hx, hy = convex_hull_curve(cost, quality, low, high, empty_quality=empty_quality)
    return float(np.trapezoid(hy, hx) / (high - low))


def peak_score(quality: ArrayLike) -> float:
    """Largest quality among the points, ``P_s``."""
    return float(np.nanmax(np.asarray(quality, np.float64)))


def cost_at_quality(
    cost: ArrayLike, quality: ArrayLike, target: float, *, tol: float = REACH_TOL
) -> float:
    """``C*``: cost of the cheapest staircase point with ``quality ≥ target − tol``.

    Returns ``inf`` when no point reaches the target.

    >>> cost_at_quality([1.0, 2.0, 3.0], [0.5, 0.9, 0.95], 0.9)
    2.0
    """
    sc, sq = pareto_staircase(cost, quality)
    ok = sq >= target - tol
    return float(sc[ok][0]) if ok.any() else float("inf")


def cost_ratio(c_star: float, best_single_cost: float) -> float:
    """``CR = C* / C_best`` (``inf`` when ``C*`` is; ``nan``, undefined, when the best
    single model is free: ``C_best = 0``, see :func:`cost_warnings`).

    >>> cost_ratio(1.0, 2.0), cost_ratio(0.0, 0.0)
    (0.5, nan)
    """
    if float(best_single_cost) == 0.0:
        return float("nan")
    return float(c_star) / float(best_single_cost)


def cost_bounds(cost: ArrayLike) -> tuple[float, float]:
    """Shared bounds ``L = mean_i min_m c[i,m]`` and ``U = mean_i max_m c[i,m]``."""
    c = np.asarray(cost, np.float32).astype(np.float64)
    return float(c.min(axis=1).mean()), float(c.max(axis=1).mean())


def strong_models(cost: ArrayLike) -> np.ndarray:
    """``E``: indices of the model(s) of maximal mean cost, ``[K]`` int."""
    mean = np.asarray(cost, np.float32).astype(np.float64).mean(axis=0)
    return np.flatnonzero(mean == mean.max())


STRONG_MODEL_RULE = (
    "the best-quality model among those that share the highest mean cost (the top price "
    "tier; lowest index on equal quality)"
)


def strong_model(cost: ArrayLike, quality: ArrayLike | None = None) -> int:
    """The tracked strong model: of the models that share the highest mean cost (the
    price tier ``E`` of :func:`strong_models`), the one of highest mean quality, lowest
    index on ties (:data:`STRONG_MODEL_RULE`). Without ``quality``, the tier's lowest
    index.

    >>> strong_model([[2.0, 2.0, 2.0, 1.0]], [[0.2, 0.9, 0.5, 1.0]])  # 3-way price tie
    1
    """
    tier = strong_models(cost)
    if quality is None or tier.size == 1:
        return int(tier[0])
    mq = np.asarray(quality, np.float32).astype(np.float64).mean(axis=0)[tier]
    return int(tier[np.argmax(mq)])  # argmax: the first (lowest index) of equal quality


def in_price_tier(cost: ArrayLike, model: int, other: int) -> bool:
    """Whether models ``model`` and ``other`` have the same mean cost (one price tier)."""
    mean = np.asarray(cost, np.float32).astype(np.float64).mean(axis=0)
    return bool(mean[int(model)] == mean[int(other)])


def rci(choice: ArrayLike, quality: ArrayLike, cost: ArrayLike) -> float:
    """Routing collapse index of one choice vector (use the largest budget's).

    ``best(i)`` = models of maximal quality for prompt ``i``; ``E`` = model(s) of maximal
    mean cost. A choice is fine if it is in ``best(i)`` and not in ``E``, or if
    ``best(i) ⊆ E`` and it is in ``best(i)``. RCI = share of prompts whose choice is not
    fine (lower is better).

    Args:
      choice: ``[N]`` chosen model per prompt.
      quality: ``[N, M]`` true quality.
      cost: ``[N, M]`` true cost.

    >>> q = [[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]]
    >>> c = [[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]
    >>> rci([1, 1, 0], q, c)  # prompt 0 ties: the expensive model is not fine
    0.3333333333333333
    """
    q = np.asarray(quality, np.float64)
    choice = np.asarray(choice).astype(np.int64)
    n, m = q.shape
    is_best = q == q.max(axis=1, keepdims=True)
    in_e = np.zeros(m, bool)
    in_e[strong_models(cost)] = True
    chosen_best = is_best[np.arange(n), choice]
    chosen_e = in_e[choice]
    best_in_e = ~np.any(is_best & ~in_e[None, :], axis=1)
    fine = (chosen_best & ~chosen_e) | (best_in_e & chosen_best)
    return float(1.0 - fine.mean())


def top2_tie_share(quality: ArrayLike) -> float:
    """Share of prompts whose two best models tie exactly.

    >>> top2_tie_share([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    0.5
    """
    q = np.sort(np.asarray(quality, np.float64), axis=1)
    if q.shape[1] < 2:
        return 0.0
    return float(np.mean(q[:, -1] == q[:, -2]))


def _pgr_curve(call_rate, quality, q_weak, q_strong):
    r = np.asarray(call_rate, np.float64).ravel()
    pgr = (np.asarray(quality, np.float64).ravel() - q_weak) / (q_strong - q_weak)
    r = np.concatenate([[0.0], r, [1.0]])
    pgr = np.concatenate([[0.0], pgr, [1.0]])
    order = np.lexsort((-pgr, r))
    r, pgr = r[order], pgr[order]
    first = np.concatenate([[True], r[1:] != r[:-1]])  # best PGR at each call rate
    return r[first], pgr[first]


def apgr(call_rate: ArrayLike, quality: ArrayLike, q_weak: float, q_strong: float) -> float:
    """RouteLLM's average performance gap recovered for a two-model pool.

    ``PGR = (P − P_weak) / (P_strong − P_weak)`` against the strong-model call rate,
    with the endpoints ``(0, 0)`` (all weak) and ``(1, 1)`` (all strong) added, the best
    PGR kept at each call rate, linearly interpolated; ``APGR = ∫_0^1 PGR dr``.

    >>> apgr([0.5], [0.9], 0.5, 1.0)
    0.65
    """
    r, pgr = _pgr_curve(call_rate, quality, q_weak, q_strong)
    return float(np.trapezoid(pgr, r))


def cpt(
    call_rate: ArrayLike, quality: ArrayLike, q_weak: float, q_strong: float, pgr: float = 0.5
) -> float:
    """RouteLLM's CPT(x): smallest strong-model call rate whose (interpolated) PGR ≥ x.

    Uses the same curve as :func:`apgr`.

    >>> cpt([0.5], [0.9], 0.5, 1.0, pgr=0.5)
    0.3125
    """
    r, g = _pgr_curve(call_rate, quality, q_weak, q_strong)
    if g[0] >= pgr:
        return float(r[0])
    for k in range(1, len(r)):
        if g[k] >= pgr:
            if g[k] == g[k - 1]:
                return float(r[k])
            return float(r[k - 1] + (pgr - g[k - 1]) * (r[k] - r[k - 1]) / (g[k] - g[k - 1]))
    return float("inf")


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
      ``cost_ratio`` (``None`` if never reached, or undefined: a free best single
      model), ``best_single_reached``, ``nauc``, ``aiq`` (``None`` when undefined: every
      prompt's cheapest and dearest model cost the same, ``L = U``; see
      :func:`cost_warnings`).
    """
    low, high = bounds
    c_star = cost_at_quality(cost, quality, best_single_quality)
    reached = bool(np.isfinite(c_star))
    ratio = cost_ratio(c_star, best_single_cost) if reached else None
    area, hull = (
        nauc(cost, quality, low, high, empty_quality=empty_quality),
        aiq(cost, quality, low, high, empty_quality=empty_quality),
    )
    return {
        "peak": peak_score(quality),
        "cost_at_best_single": float(c_star) if reached else None,
        "cost_ratio": _defined(ratio),
        "best_single_reached": reached,
        "nauc": _defined(area),
        "aiq": _defined(hull),
    }


def _defined(x: float | None) -> float | None:
    return x if x is None or not np.isnan(x) else None


def cost_warnings(best_single: str, mean_cost: dict[str, float]) -> list[str]:
    """One line per cost degeneracy that leaves a metric undefined (``null``).

    Args:
      best_single: name of the best single model.
      mean_cost: model name -> mean cost per prompt.

    >>> cost_warnings("a", {"a": 0.0, "b": 1.0})[0][:40]
    'the best single model a has zero mean co'
    """
    if all(v == 0.0 for v in mean_cost.values()):
        return [
            "every model has zero mean cost: the cost ratio (CR), nAUC and AIQ are "
            "undefined (null) and the routers can only be compared on quality"
        ]
    if mean_cost.get(best_single) == 0.0:
        return [
            f"the best single model {best_single} has zero mean cost: the cost ratio "
            "CR = C*/C_best is undefined (null); compare the routers on C* (USD) instead"
        ]
    return []
