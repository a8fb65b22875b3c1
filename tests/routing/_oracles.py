"""Test oracles for the sweeps, written for the tests and independent of jaxroute's code
(the benchmark in jaxroute/_bench keeps its own baseline loop; tuning it never moves a
test reference).

Each oracle evaluates a decision rule directly, one parameter at a time, and averages
the true quality and cost of the chosen models in float64 (docs/method.md §1):

- budget rule: the best score among the models whose predicted cost is at most the
  budget (lowest index on equal scores); no such model: the lowest predicted cost
  (lowest index on equal costs);
- λ rule: the best ``s − λ·ĉ`` computed in float32, one rounding per operation, as the
  rule is specified (lowest index on equal values).
"""

import numpy as np


def random_problem(n_prompts: int, n_models: int, n_routers: int, seed: int):
    """Random 0/1 quality, log-normal costs, noisy scores and predicted costs, float32."""
    rng = np.random.default_rng(seed)
    p_correct = np.linspace(0.3, 0.9, n_models)
    quality = (rng.random((n_prompts, n_models)) < p_correct).astype(np.float32)
    price = np.geomspace(1e-5, 1e-2, n_models)
    cost = (np.exp(rng.normal(size=(n_prompts, n_models))) * price).astype(np.float32)
    scores = quality[None] + rng.normal(scale=0.3, size=(n_routers, n_prompts, n_models))
    noise = np.exp(rng.normal(scale=0.3, size=(n_routers, n_prompts, n_models)))
    return scores.astype(np.float32), (cost[None] * noise).astype(np.float32), quality, cost


def _first_max(values: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Per row, the lowest column index holding the largest allowed value (rows with
    nothing allowed: -1)."""
    top = np.max(np.where(allowed, values, -np.inf), axis=1, keepdims=True)
    hit = allowed & (values == top)
    index = np.where(hit, np.arange(values.shape[1]), values.shape[1]).min(axis=1)
    return np.where(hit.any(axis=1), index, -1)


def _points(choices, quality, cost):
    n, m = quality.shape
    rows = np.arange(n)
    q = np.array([quality[rows, ch].astype(np.float64).mean() for ch in choices])
    c = np.array([cost[rows, ch].astype(np.float64).mean() for ch in choices])
    shares = np.array([np.bincount(ch, minlength=m) / n for ch in choices])
    return q, c, shares


def budget_rule_choices(scores, pred_costs, budget) -> np.ndarray:
    """``[N]`` choices of the budget rule at one budget (float32 comparisons)."""
    s = np.asarray(scores, np.float32)
    pc = np.asarray(pred_costs, np.float32)
    feasible = pc <= np.float32(budget)
    choice = _first_max(s, feasible)
    cheapest = _first_max(-pc, np.ones_like(feasible))
    return np.where(feasible.any(axis=1), choice, cheapest)


def lambda_rule_choices(scores, pred_costs, lam) -> np.ndarray:
    """``[N]`` choices of the λ rule at one λ: float32 ``s − λ·ĉ``, rounded per operation."""
    s = np.asarray(scores, np.float32)
    pc = np.asarray(pred_costs, np.float32)
    value = s - np.multiply(np.float32(lam), pc, dtype=np.float32)
    return _first_max(value, np.ones(value.shape, bool))


def budget_rule_loop(scores, pred_costs, quality, cost, budgets):
    """``(quality [B], cost [B], shares [B, M])`` of the budget rule, one budget at a time."""
    choices = [budget_rule_choices(scores, pred_costs, b) for b in budgets]
    return _points(choices, quality, cost)


def lambda_rule_loop(scores, pred_costs, quality, cost, lams):
    """``(quality [B], cost [B], shares [B, M])`` of the λ rule, one λ at a time."""
    choices = [lambda_rule_choices(scores, pred_costs, lam) for lam in lams]
    return _points(choices, quality, cost)


def lambda_every_point(scores, pred_costs, quality, cost) -> np.ndarray:
    """Every operating point of the λ rule ``[P, 2]`` (quality, cost), float64: all
    pairwise crossings of every prompt's lines as candidate breakpoints, the rule
    evaluated (in float64) at the midpoint of each gap, below the first and above the
    last."""
    s, pc = scores.astype(np.float64), pred_costs.astype(np.float64)
    n, m = s.shape
    a, b = np.triu_indices(m, 1)
    dc = pc[:, a] - pc[:, b]
    cross = np.where(dc != 0, (s[:, a] - s[:, b]) / np.where(dc != 0, dc, 1), np.nan)
    t = np.unique(cross[np.isfinite(cross) & (cross > 0)])
    inner = (t[:-1] + t[1:]) / 2
    lams = np.concatenate([[0.0, t[0] / 2], inner, [t[-1] * 2 + 1]]) if t.size else [0.0]
    rows = np.arange(n)
    points = []
    for lam in lams:
        ch = np.argmax(s - lam * pc, axis=1)  # at λ = 0 exactly: ties to the lowest index
        q64, c64 = quality[rows, ch].astype(np.float64), cost[rows, ch].astype(np.float64)
        points.append((q64.mean(), c64.mean()))
    return np.array(points)
