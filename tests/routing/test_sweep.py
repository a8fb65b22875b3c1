"""Sweep tests: equals a float64 Python loop, compiles once, shards, single budget."""

import textwrap

import jax.numpy as jnp
import numpy as np
import pytest
from _apps import fake_devices_env, run_python
from _oracles import (
    budget_rule_choices,
    budget_rule_loop,
    lambda_every_point,
    lambda_rule_choices,
    lambda_rule_loop,
    random_problem,
)

from jaxroute.routing import (
    budget_choice,
    budget_sweep,
    lambda_choice,
    lambda_grid,
    lambda_sweep,
    log_budget_grid,
    orbit_budget_grid,
)
from jaxroute.routing import sweep as sweep_mod


def loop64(scores, pred_costs, quality, cost, budgets, rule="budget"):
    """The tests' own loop over parameters (tests/routing/_oracles.py)."""
    loop = {"budget": budget_rule_loop, "lambda": lambda_rule_loop}[rule]
    return loop(scores, pred_costs, quality, cost, np.asarray(budgets, np.float32))


def test_budget_choice_matches_numpy_rule():
    s, pc, _, _ = tied_problem(r=1)
    for b in (1e-5, 1e-4, 3e-4, 2e-3, 1.0):
        ref = budget_rule_choices(s[0], pc[0], b)
        np.testing.assert_array_equal(np.asarray(budget_choice(s[0], pc[0], b)), ref)


def test_lambda_choice_matches_the_oracle_on_ties():
    """Against the tests' own float32 rule, on the problem's breakpoints (λ = 10, 100)."""
    s, pc, _, _ = tied_problem(r=1)
    for lam in (0.0, 10.0, 100.0, 1e3, 1e4):
        ref = lambda_rule_choices(s[0], pc[0] * 1000, lam)
        got = np.asarray(lambda_choice(s[0], pc[0] * 1000, lam))
        np.testing.assert_array_equal(got, ref)


def tied_problem(n=300, m=5, r=2, seed=0):
    """Small problem with many exact ties in scores and predicted costs."""
    rng = np.random.default_rng(seed)
    quality = rng.integers(0, 2, (n, m)).astype(np.float32) * rng.choice([0.5, 1.0], (n, m))
    cost = rng.choice([1e-4, 3e-4, 1e-3, 5e-3], (n, m)).astype(np.float32)
    scores = rng.integers(0, 3, (r, n, m)).astype(np.float32)
    pred = rng.choice([1e-4, 3e-4, 1e-3, 5e-3], (r, n, m)).astype(np.float32)
    return scores, pred, quality.astype(np.float32), cost


def rel(a, b):
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


@pytest.mark.parametrize("method", ["events", "dense"])
def test_sweep_equals_float64_loop_with_ties(method):
    s, pc, y, c = tied_problem()
    budgets = np.concatenate([[1e-5], np.unique(pc), np.geomspace(1e-4, 1e-2, 7), [1.0]])
    res = budget_sweep(s, pc, y, c, budgets, method=method)
    for r in range(s.shape[0]):
        lq, lc, ls = loop64(s[r], pc[r], y, c, budgets)
        assert rel(res.quality[r], lq) < 1e-12
        assert rel(res.cost[r], lc) < 1e-12
        np.testing.assert_allclose(res.shares[r], ls, atol=1e-12)


def test_sweep_accuracy_36000_prompts():
    s, pc, y, c = random_problem(36000, 11, 1, 0)
    budgets = np.geomspace(c.min(), c.max(), 5)
    res = budget_sweep(s[0], pc[0], y, c, budgets)
    lq, lc, ls = budget_rule_loop(s[0], pc[0], y, c, budgets.astype(np.float32))
    assert rel(res.quality, lq) < 1e-9
    assert rel(res.cost, lc) < 1e-9
    np.testing.assert_allclose(res.shares, ls, atol=1e-12)


def test_per_router_budgets_and_unsorted():
    s, pc, y, c = tied_problem(r=3)
    budgets = np.array([[5e-3, 1e-4, 3e-4], [1e-3, 1e-3, 2e-4], [1.0, 0.0, 4e-4]])
    res = budget_sweep(s, pc, y, c, budgets)
    assert res.quality.shape == (3, 3) and res.shares.shape == (3, 3, 5)
    for r in range(3):
        lq, lc, _ = loop64(s[r], pc[r], y, c, budgets[r])
        assert rel(res.quality[r], lq) < 1e-12 and rel(res.cost[r], lc) < 1e-12


def test_single_budget_and_single_router():
    s, pc, y, c = tied_problem(r=1)
    res = budget_sweep(s[0], pc[0], y, c, 3e-4)
    assert res.quality.shape == (1,) and res.shares.shape == (1, 5)
    lq, lc, _ = loop64(s[0], pc[0], y, c, [3e-4])
    assert rel(res.quality, lq) < 1e-12 and rel(res.cost, lc) < 1e-12


def test_compiles_once_for_fixed_shape():
    s, pc, y, c = tied_problem(n=64, m=4, r=2, seed=3)
    budget_sweep(s, pc, y, c, np.linspace(1e-4, 1e-2, 9))
    before = sweep_mod.TRACE_COUNTS["events"]
    for k in range(3):
        budget_sweep(s + k, pc * (k + 1), y, c, np.linspace(1e-4, 1e-2, 9) * (k + 1))
    assert sweep_mod.TRACE_COUNTS["events"] == before


def test_empty_feasible_set_goes_to_cheapest_predicted():
    scores = np.array([[0.9, 0.5, 0.1]], np.float32)
    pred = np.array([[3.0, 2.0, 1.0]], np.float32)
    y = np.array([[1.0, 0.5, 0.25]], np.float32)
    c = np.array([[3.0, 2.0, 1.0]], np.float32)
    assert int(budget_choice(scores, pred, 0.5)[0]) == 2  # not model 0
    res = budget_sweep(scores, pred, y, c, [0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(res.quality, [0.25, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(res.shares[0], [0, 0, 1])


def test_lambda_sweep_dense_equals_loop():
    """method="dense" applies lambda_choice as is (ties to the lowest index, also on the
    breakpoints λ = 10 and 100 of this problem)."""
    s, pc, y, c = tied_problem(r=2)
    lams = np.array([0.0, 10.0, 100.0, 1e3, 1e4])
    res = lambda_sweep(s, pc * 1000, y, c, lams, chunk=2, method="dense")
    for r in range(2):
        lq, lc, ls = loop64(s[r], pc[r] * 1000, y, c, lams, rule="lambda")
        assert rel(res.quality[r], lq) < 1e-12 and rel(res.cost[r], lc) < 1e-12
        np.testing.assert_allclose(res.shares[r], ls, atol=1e-12)


def _distinct(points):
    """Consecutive duplicates removed (a gap whose choice does not change)."""
    keep = np.concatenate([[True], np.any(np.diff(points, axis=0) != 0, axis=1)])
    return points[keep]


@pytest.mark.parametrize("kind", ["random", "tied"])
def test_lambda_sweep_exact_at_every_breakpoint(kind):
    """The event sweep over lambda_grid gives exactly the operating points of a float64
    NumPy loop over every breakpoint (same sequence, ~1e-12)."""
    for seed in range(3):
        if kind == "random":
            s, pc, y, c = random_problem(300, 6, 1, seed)
            s, pc = s[0], pc[0]
        else:
            s, pc, y, c = tied_problem(n=200, m=5, r=1, seed=seed)
            s, pc = s[0], pc[0]
        grid = lambda_grid(s, pc)
        res = lambda_sweep(s, pc, y, c, grid)
        got = _distinct(np.stack([res.quality, res.cost], 1))
        want = _distinct(lambda_every_point(s, pc, y, c))
        assert got.shape == want.shape, (kind, seed, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(res.shares.sum(1), 1.0, atol=1e-12)
        # Between breakpoints the events sweep agrees with the direct (dense) rule.
        mids = (grid[:-1] + grid[1:]) / 2
        dense = lambda_sweep(s, pc, y, c, mids, method="dense")
        events = lambda_sweep(s, pc, y, c, mids)
        np.testing.assert_allclose(events.quality, dense.quality, rtol=1e-12)
        np.testing.assert_allclose(events.shares, dense.shares, atol=1e-12)


def test_lambda_grid_small_example():
    # Lines 0.9 - 1.0·λ, 0.5 - 0.1·λ, 0.2 - 0·λ: model 0 until λ = 4/9, model 1 until 3.
    s = np.array([[0.9, 0.5, 0.2]], np.float32)
    pc = np.array([[1.0, 0.1, 0.0]], np.float32)
    g = lambda_grid(s, pc)
    np.testing.assert_allclose(g, [0.0, 0.2 / 0.9, 0.4 / 0.9, 3.0], rtol=1e-6)
    y = np.array([[1.0, 0.5, 0.0]], np.float32)
    res = lambda_sweep(s, pc, y, pc, g)
    np.testing.assert_allclose(res.quality, [1.0, 1.0, 0.5, 0.0])
    # Tied top scores: λ = 0 is the rule itself (lowest index), just above 0 the cheaper.
    s2 = np.array([[0.5, 0.5]], np.float32)
    c2 = np.array([[2.0, 1.0]], np.float32)
    g2 = lambda_grid(s2, c2)
    res2 = lambda_sweep(s2, c2, np.array([[1.0, 0.0]], np.float32), c2, g2)
    np.testing.assert_allclose(res2.shares[:2], [[1.0, 0.0], [0.0, 1.0]])


def test_grids():
    pc = np.arange(1, 1001, dtype=np.float32).reshape(100, 10) * 1e-4
    g = orbit_budget_grid(pc)
    assert g.shape == (100,) and np.isclose(g[0], 1e-4) and np.isclose(g[-1], 0.1)
    cost = np.array([[1e-4, 1e-2], [3e-4, 3e-2]], np.float32)
    lg = log_budget_grid(cost, 7)
    assert lg.shape == (7,) and np.isclose(lg[0], 2e-4) and np.isclose(lg[-1], 2e-2)
    assert np.all(np.diff(np.log(lg)) > 0)
    assert log_budget_grid(cost, 1).shape == (1,)


def test_rank_promotion_safe_rules():
    s = jnp.ones((2, 3, 4))
    assert budget_choice(s, s, 1.0).shape == (2, 3)
    assert lambda_choice(s, s, jnp.ones(())).shape == (2, 3)


SHARD_SCRIPT = textwrap.dedent(
    """
    import jax, numpy as np
    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert len(jax.devices()) == 8, jax.devices()
    from jaxroute.routing import budget_sweep
    rng = np.random.default_rng(0)
    n, m, r = 64, 4, 3
    y = rng.integers(0, 2, (n, m)).astype(np.float32)
    c = rng.choice([1e-4, 1e-3, 5e-3], (n, m)).astype(np.float32)
    s = rng.integers(0, 3, (r, n, m)).astype(np.float32)
    pc = rng.choice([1e-4, 1e-3, 5e-3], (r, n, m)).astype(np.float32)
    b = np.geomspace(5e-5, 1e-2, 13)
    ref = budget_sweep(s, pc, y, c, b, devices=jax.devices()[:1])
    for shard, method in (("budget", "events"), ("router", "events"), ("budget", "dense")):
        out = budget_sweep(s, pc, y, c, b, shard=shard, method=method)
        for a, e in zip(out, ref):
            np.testing.assert_array_equal(a, e)
    print("SHARD_OK")
    """
)


@pytest.mark.slow
def test_sharded_equals_single_device_8_fake_cpus():
    # The suite's app environment (its compilation cache) with eight fake devices.
    proc = run_python(["-c", SHARD_SCRIPT], env=fake_devices_env(8), timeout=300)
    assert "SHARD_OK" in proc.stdout, proc.stdout + proc.stderr


def test_infinite_scores_follow_the_rule():
    s = np.array([[-np.inf, -np.inf, 0.0], [-np.inf, 1.0, -np.inf]], np.float32)
    pc = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], np.float32)
    y = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], np.float32)
    budgets = [0.5, 1.0, 2.0, 3.0]
    res = budget_sweep(s, pc, y, pc, budgets)
    for j, b in enumerate(budgets):
        ch = np.asarray(budget_choice(s, pc, b))
        ref = y.astype(np.float64)[np.arange(2), ch].mean()
        assert res.quality[j] == pytest.approx(ref, rel=1e-12)
