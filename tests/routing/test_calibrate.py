"""Calibration to a target: the exact optimum over every parameter, checked by brute force."""

import numpy as np
import pytest

from jaxroute.routing import calibrate as rcal


def _data(seed, n=40, m=4):
    rng = np.random.default_rng(seed)
    # Coarse binary-exact values: scores and predicted costs tie often, and a λ where two
    # lines cross is the same float64 number whichever pair of lines gives it.
    scores = rng.integers(0, 6, (n, m)).astype(np.float32) / 4
    pred = (rng.integers(1, 8, (n, m)) * 0.25).astype(np.float32)
    quality = rng.integers(0, 2, (n, m)).astype(np.float32)
    cost = (pred + rng.normal(0, 0.2, (n, m))).clip(0.05).astype(np.float32)
    return scores, pred, quality, cost


def _np_budget(s, c, b):
    feas = c <= np.float32(b)
    masked = np.where(feas, s, -np.inf)
    ch = np.argmax(masked, axis=1)
    return np.where(feas.any(1), ch, np.argmin(c, axis=1))


def _np_lambda(s, c, lam):
    # float64: brute-force points are never at a breakpoint, so rounding cannot flip them
    return np.argmax(s.astype(np.float64) - lam * c.astype(np.float64), axis=1)


def _metrics(ch, q, c, m):
    rows = np.arange(len(ch))
    return {
        "cost": c[rows, ch].astype(np.float64).mean(),
        "quality": q[rows, ch].astype(np.float64).mean(),
        "share": (ch == m).mean(),
    }


def _brute_budgets(s, c, rng):
    u = np.unique(c)
    mids = (u[:-1] + u[1:]) / 2
    return np.concatenate([u, mids, [u[0] / 2, u[-1] * 3], rng.uniform(0, 2.5, 500)])


def _brute_lambdas(s, c, rng):
    lams = [0.0]
    n, m = s.shape
    for i in range(n):  # every pairwise crossing of every prompt
        for a in range(m):
            for b in range(m):
                if c[i, a] != c[i, b]:
                    lam = (float(s[i, a]) - float(s[i, b])) / (float(c[i, a]) - float(c[i, b]))
                    if lam > 0:
                        lams.append(lam)
    x = np.unique(lams)
    mids = (x[:-1] + x[1:]) / 2
    return np.concatenate([[0.0], mids, [x[-1] * 2 + 1], rng.uniform(0, 5, 500)])


# rule -> (the tests' own choice function, brute-force parameters)
BRUTE = {"budget": (_np_budget, _brute_budgets), "lambda": (_np_lambda, _brute_lambdas)}


def _key(kind, met, target):
    """The selection's ordering as a tuple to maximise, or None when infeasible."""
    if kind == "quality":
        return (-met["cost"], met["quality"]) if met["quality"] >= target - 1e-12 else None
    v = met[kind]
    return (v, met["quality"], -met["cost"]) if v <= target + 1e-12 else None


@pytest.mark.parametrize("rule", ["budget", "lambda"])
@pytest.mark.parametrize("seed", [0, 1])
def test_calibration_is_the_exact_best_parameter(rule, seed):
    s, pc, q, c = _data(seed)
    rng = np.random.default_rng(seed)
    choose, params = BRUTE[rule]
    strong = int(np.argmax(c.mean(0)))
    brute = [_metrics(choose(s, pc, p), q, c, strong) for p in params(s, pc, rng)]
    curve = rcal.calibration_curve(s, pc, q, c, rule)
    # The exact curve takes every value the brute force finds (and nothing else).
    seen = {(round(b["cost"], 9), round(b["quality"], 9)) for b in brute}
    curve_pts = set(zip(np.round(curve.cost, 9), np.round(curve.quality, 9), strict=True))
    assert seen == curve_pts
    costs = np.array([b["cost"] for b in brute])
    qual = np.array([b["quality"] for b in brute])
    shares = np.array([b["share"] for b in brute])
    for kind, target in [
        ("cost", float(np.quantile(costs, 0.3))),
        ("cost", float(np.quantile(costs, 0.8)) + 1e-3),
        ("share", float(np.quantile(shares, 0.5)) + 0.01),
        ("quality", float(np.quantile(qual, 0.6))),
    ]:
        cal = rcal.from_curve(curve, rule=rule, kind=kind, target=target, model=strong)
        got = _metrics(choose(s, pc, cal.parameter), q, c, strong)
        # The stored calibration values are the rule's at the stored parameter.
        assert got[kind] == pytest.approx(cal.calibration_value, abs=1e-12)
        assert got["cost"] == pytest.approx(cal.calibration_cost, abs=1e-12)
        if kind == "quality":
            assert got["quality"] >= target - 1e-12
        else:
            assert got[kind] <= target + 1e-12
        best = max(k for b in brute if (k := _key(kind, b, target)) is not None)
        assert _key(kind, got, target) == pytest.approx(best, abs=1e-12)


def test_unreachable_targets_name_the_reachable_range():
    s, pc, q, c = _data(0)
    curve = rcal.calibration_curve(s, pc, q, c, "budget")
    with pytest.raises(rcal.CalibrationError, match="lowest USD mean cost per prompt"):
        rcal.from_curve(curve, rule="budget", kind="cost", target=1e-6)
    with pytest.raises(rcal.CalibrationError, match="highest mean quality"):
        rcal.from_curve(curve, rule="budget", kind="quality", target=1.01)


def test_lambda_breakpoints_follow_the_envelope():
    # Lines 3 - 3λ, 2 - λ, 1 - 0λ (costs 3, 1, 0): 2 - λ overtakes at λ = 0.5, 1 at λ = 1.
    s = np.array([[3.0, 2.0, 1.0]], np.float32)
    c = np.array([[3.0, 1.0, 0.0]], np.float32)
    assert rcal.lambda_breakpoints(s, c).tolist() == [0.5, 1.0]
    # The line of cost 2 and score 2.5 is never on top (2.5 - 2λ < max of the others).
    s2 = np.array([[3.0, 2.0, 1.0, 2.4]], np.float32)
    c2 = np.array([[3.0, 1.0, 0.0, 2.0]], np.float32)
    assert rcal.lambda_breakpoints(s2, c2).tolist() == [0.5, 1.0]


def test_bootstrap_interval_is_seeded_and_covers_the_mean():
    v = np.random.default_rng(3).normal(1.0, 1.0, 400)
    a = rcal.bootstrap_mean_ci(v, seed=7, chunk_elems=4000)  # 10 resamples per chunk
    b = rcal.bootstrap_mean_ci(v, seed=7)
    assert a == b  # chunking does not change the draws
    se = v.std() / np.sqrt(v.size)
    assert a[0] == pytest.approx(v.mean() - 1.96 * se, abs=0.25 * se)
    assert a[1] == pytest.approx(v.mean() + 1.96 * se, abs=0.25 * se)
