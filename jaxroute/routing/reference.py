"""Reference routers (docs/method.md §2), as scores / predicted costs for the same sweep.

Each returns ``(scores, pred_costs)`` float32 ``[N, M]`` arrays, except the zero router,
which is a curve (the convex hull of the single-model points).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.typing import ArrayLike

from jaxroute.routing.metrics import _upper_hull, cost_bounds, curve_metrics, pareto_staircase
from jaxroute.routing.rules import RULES


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


def reference_routers(
    quality: ArrayLike, cost: ArrayLike, *, seed: int = 0, model_names=None
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, dict]]:
    """The reference routers that route per prompt, stacked for one sweep with others.

    Returns:
      ``(names, scores [R, N, M], pred_costs [R, N, M], extras)``: oracle, best single,
      cheapest and random (from ``seed``); ``extras`` gives the single-model references
      their ``model`` (name, from ``model_names``; default the index as a string) and
      its mean ``quality`` and ``cost``.
    """
    q, c = _qc(quality, cost)
    n, m = q.shape
    names = [str(x) for x in model_names] if model_names is not None else [str(j) for j in range(m)]
    out = {"oracle": oracle_router(quality, cost)}
    extras = {}
    for name, model in (("best_single", best_single_model(q, c)), ("cheapest", cheapest_model(c))):
        out[name] = single_model_router(model, n, m)
        extras[name] = {
            "model": names[model],
            "quality": float(q[:, model].mean()),
            "cost": float(c[:, model].mean()),
        }
    out["random"] = random_router(quality, cost, seed)
    keys = list(out)
    scores = np.stack([out[k][0] for k in keys])
    pred_costs = np.stack([out[k][1] for k in keys])
    return keys, scores, pred_costs, extras


def zero_router_result(quality: ArrayLike, cost: ArrayLike) -> dict:
    """The zero router as a per-seed result: the curve metrics of the single-model hull
    (mixing models needs no per-prompt rule, so every other rule's entry, the λ
    rule's under ``"lambda"``, is the same)."""
    q, c = _qc(quality, cost)
    best = best_single_model(q, c)
    hc, hq = zero_router(q, c)
    zr = curve_metrics(
        hc,
        hq,
        best_single_quality=float(q[:, best].mean()),
        best_single_cost=float(c[:, best].mean()),
        bounds=cost_bounds(np.asarray(cost, np.float32)),
    )
    zr["curve"] = {"cost": hc.tolist(), "quality": hq.tolist()}
    base = dict(zr)
    for rule in RULES.values():
        if rule.key is not None:
            zr[rule.key] = dict(base)
    return zr
