"""Hand-computed metric values (docs/method.md §2), reference routers, diagnostics, summary."""

import json

import numpy as np
import pytest

from jaxroute._bench.sweep import bench_sweep
from jaxroute.routing import (
    aiq,
    apgr,
    best_single_model,
    budget_sweep,
    cheapest_model,
    collapse_on_train,
    convex_hull_curve,
    cost_at_quality,
    cost_bounds,
    cpt,
    dataset_summary,
    evaluate_router,
    nauc,
    noise_injection,
    oracle_router,
    pareto_staircase,
    peak_score,
    random_router,
    rci,
    single_model_router,
    strong_models,
    top2_tie_share,
    zero_router,
)


def test_staircase_ties_and_order():
    c, q = pareto_staircase([3.0, 1.0, 2.0, 2.0, 1.0, 4.0], [0.9, 0.5, 0.5, 0.7, 0.5, 0.9])
    assert c.tolist() == [1.0, 2.0, 3.0] and q.tolist() == [0.5, 0.7, 0.9]


def test_nauc_hand_computed():
    # L=1, U=5; staircase (1,.2) (2,.6) (4,.8) (6,1.0 unaffordable at U)
    cost, qual = [1.0, 2.0, 4.0, 6.0], [0.2, 0.6, 0.8, 1.0]
    # trapz over (1,.2) (2,.6) (4,.8) (5,.8): .4 + 1.4 + .8 = 2.6, / 4
    assert nauc(cost, qual, 1.0, 5.0) == pytest.approx(0.65)
    # nothing affordable at L: starts at (L, 0) (module flag), or the cheapest point's
    assert nauc([2.0], [0.5], 1.0, 3.0) == pytest.approx((0.25 + 0.5) / 2)
    assert nauc([2.0], [0.5], 1.0, 3.0, empty_quality=None) == pytest.approx(0.5)


def test_aiq_hand_computed_and_shared_range():
    cost, qual = [1.0, 2.0, 3.0], [0.5, 0.55, 0.9]
    hx, hy = convex_hull_curve(cost, qual, 1.0, 4.0)
    assert hx.tolist() == [1.0, 3.0, 4.0] and hy.tolist() == [0.5, 0.9, 0.9]
    assert aiq(cost, qual, 1.0, 4.0) == pytest.approx((1.4 + 0.9) / 3)
    assert aiq(cost, qual, 1.0, 4.0) >= nauc(cost, qual, 1.0, 4.0)


def test_peak_cstar_cr_reach_tolerance():
    assert peak_score([0.2, 0.9, 0.4]) == 0.9
    assert cost_at_quality([1.0, 2.0, 3.0], [0.5, 0.88, 0.9], 0.9) == 3.0
    assert cost_at_quality([1.0], [0.9 - 5e-10], 0.9) == 1.0  # within 1e-9
    assert cost_at_quality([1.0, 2.0], [0.5, 0.8], 0.9) == float("inf")


def test_rci_cases():
    q = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 0]], np.float32)
    c = np.tile(np.array([1.0, 2.0, 3.0], np.float32), (4, 1))  # E = {2}
    # p0 best {0,1}: 1 fine; p1 best {1,2}: 2 not fine; p2 best {2} ⊆ E: 2 fine; p3: 1 wrong
    assert rci([1, 2, 2, 1], q, c) == pytest.approx(0.5)
    assert rci([0, 1, 2, 0], q, c) == 0.0
    assert strong_models(c).tolist() == [2]


def test_top2_and_two_model_metrics():
    assert top2_tie_share([[1, 1], [0, 1], [0.5, 0.5], [1, 0]]) == 0.5
    # points r=.25 → pgr .5, r=.5 → pgr .9
    r, q = [0.25, 0.5], [0.6, 0.68]  # weak .5, strong .7
    assert apgr(r, q, 0.5, 0.7) == pytest.approx(
        0.25 * 0.5 / 2 + 0.25 * (0.5 + 0.9) / 2 + 0.5 * (0.9 + 1.0) / 2
    )
    assert cpt(r, q, 0.5, 0.7, 0.5) == pytest.approx(0.25)
    assert cpt(r, q, 0.5, 0.7, 0.95) == pytest.approx(0.75)


def small():
    q = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1], [0, 0, 1]], np.float32)
    c = np.array([[1, 2, 4], [1, 2, 4], [1, 3, 4], [2, 2, 4]], np.float32) * 1e-3
    return q, c


def test_reference_routers():
    q, c = small()
    s, pc = oracle_router(q, c)
    big = budget_sweep(s, pc, q, c, [1.0])
    assert big.quality[0] == pytest.approx(1.0)
    assert big.cost[0] == pytest.approx((1 + 2 + 1 + 4) / 4 * 1e-3)  # cheapest best
    assert best_single_model(q, c) == 2 and cheapest_model(c) == 0
    s1, pc1 = single_model_router(2, 4, 3)
    res = evaluate_router(s1, pc1, q, c)
    assert res["cost_ratio"] == 1.0 and res["best_single_reached"]
    assert res["strong_call_rate_at_max_budget"] == 1.0
    zc, zq = zero_router(q, c)
    assert zc.tolist() == pytest.approx([1.25e-3, 4e-3])  # (2.25e-3, .5) is dominated
    assert zq.tolist() == pytest.approx([0.5, 0.75])
    rs, rpc = random_router(q, c, seed=3)
    assert np.array_equal(rs, random_router(q, c, seed=3)[0]) and np.array_equal(rpc, c)


def test_best_single_tie_goes_to_cheaper():
    q = np.array([[1, 1], [0, 0]], np.float32)
    c = np.array([[2, 1], [2, 1]], np.float32)
    assert best_single_model(q, c) == 1


def test_evaluate_router_outputs_json():
    q, c = small()
    res = evaluate_router(*oracle_router(q, c), q, c, budgets=("log", 5))
    json.dumps(res, allow_nan=False)
    assert len(res["curve"]["budget"]) == 5 and res["rci"] == 0.0
    assert res["bounds"] == pytest.approx(list(cost_bounds(c)))
    s = np.zeros_like(q)
    s[:, 0] = 1  # never reaches best single
    res = evaluate_router(s, c, q, c, budgets=[1e-3, 1.0])
    assert res["cost_ratio"] is None and res["best_single_reached"] is False
    json.dumps(res, allow_nan=False)
    one = evaluate_router(s, c, q, c, budgets=[1.0])
    assert len(one["curve"]["cost"]) == 1


def test_two_model_pool_apgr():
    q = np.array([[1, 1], [0, 1], [1, 1], [0, 0]], np.float32)
    c = np.array([[1, 10], [1, 10], [1, 10], [1, 10]], np.float32)
    res = evaluate_router(*oracle_router(q, c), q, c, budgets=[0.5, 5.0, 20.0])
    # Weak model 0 (quality .5), strong model 1 (.75). Budgets .5 and 5 afford model 0
    # only (call rate 0, PGR 0); at 20 the oracle sends p1 alone to model 1: rate .25,
    # quality .75, PGR 1. APGR = ∫ PGR dr over (0, 0), (.25, 1), (1, 1) = .125 + .75.
    assert res["apgr"] == pytest.approx(0.875, abs=1e-12)
    assert res["cpt50"] == pytest.approx(0.125, abs=1e-12)  # PGR .5 halfway to r = .25


def test_collapse_and_noise_injection():
    rng = np.random.default_rng(0)
    q = (rng.random((120, 4)) < [0.5, 0.6, 0.7, 0.9]).astype(np.float32)
    c = np.tile(np.array([1, 2, 3, 10], np.float32) * 1e-4, (120, 1))
    out = noise_injection(q, c, [0.0, 0.01, 1.0, 100.0], seed=0)
    rate = out["strong_call_rate"]
    assert rate.shape == (4,)
    choice = np.argmax(oracle_router(q, c)[0], axis=1)
    assert rate[0] == pytest.approx(np.mean(choice == 3))
    assert rate[-1] == pytest.approx(0.25, abs=0.1)  # pure noise: uniform
    res = collapse_on_train(*oracle_router(q, c), q, c, budgets=("log", 20))
    assert res["rci"] == 0.0


def test_dataset_summary():
    q, c = small()
    ds = dataset_summary(q, c, ["a", "b", "c"], ["t1", "t1", "t2", "t1"])
    json.dumps(ds, allow_nan=False)
    assert ds["n_prompts"] == 4 and ds["models"] == ["a", "b", "c"]
    assert ds["tasks"] == {"t1": 3, "t2": 1}
    assert ds["top2_tie_share"] == 0.75
    assert ds["oracle"]["quality"] == 1.0 and ds["oracle"]["strong_model_share"] == 0.25
    assert ds["best_single"]["model"] == "c"
    assert ds["mean_cost"]["c"] == pytest.approx(4e-3)


def test_bench_tiny():
    out = bench_sweep(20, 300, 5, 2, memory_subprocess=False, repeats=1)
    assert out["max_rel_err"] < 1e-9
    # Timings have no known value; the ratio must be the one of the reported times.
    assert out["ratio"] == out["baseline_s"] / out["jaxroute_s"]
    assert (out["n_budgets"], out["n_prompts"], out["n_models"], out["n_routers"]) == (
        20,
        300,
        5,
        2,
    )
    assert np.isfinite(out["baseline_peak_mem_mb"])
