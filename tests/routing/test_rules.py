"""The decision-rule table: a third rule is one entry, and everything follows it."""

import dataclasses

import numpy as np
import pytest

from jaxroute.report import build_report, headline_table
from jaxroute.report.report import markdown
from jaxroute.routing import calibrate as rcal
from jaxroute.routing import dataset_summary, evaluate_router, rules


def _problem(n=50, m=3, seed=0):
    rng = np.random.default_rng(seed)
    q = (rng.random((n, m)) < np.linspace(0.3, 0.9, m)).astype(np.float32)
    c = (np.geomspace(1e-4, 1e-2, m) * rng.uniform(0.5, 1.5, (n, m))).astype(np.float32)
    s = (q + rng.normal(0, 0.3, q.shape)).astype(np.float32)
    return s, c, q, c


@pytest.fixture
def third_rule(monkeypatch):
    """A copy of the budget rule under another name, added as one table entry."""
    copy = dataclasses.replace(
        rules.RULES["budget"], name="capped", title="capped rule", short="K", key="capped"
    )
    monkeypatch.setitem(rules.RULES, "capped", copy)
    return copy


def test_a_third_rule_is_one_entry(third_rule):
    s, pc, q, c = _problem()
    res = evaluate_router(s, pc, q, c, budgets=("log", 8))
    assert set(rules.RULES) == {"budget", "lambda", "capped"}
    sub = res["capped"]  # evaluated, under its own key, like the budget rule it copies
    for key in ("peak", "nauc", "aiq", "cost_ratio", "rci", "strong_call_rate_at_max_budget"):
        assert sub[key] == res[key], key
    assert sub["curve"]["budget"] == res["curve"]["budget"]
    # Calibration and serving look it up by name.
    curve = rcal.calibration_curve(s, pc, q, c, "capped")
    np.testing.assert_array_equal(curve.cost, rcal.calibration_curve(s, pc, q, c, "budget").cost)
    np.testing.assert_array_equal(
        rules.choose("capped", s, pc, 1e-3), rules.choose("budget", s, pc, 1e-3)
    )
    # The report: a headline column per rule and a table of its own.
    ds = dataset_summary(q, c, ["a", "b", "c"])
    rep = build_report(ds, {"r": [res]})
    assert "CR K" in headline_table(rep)
    assert "## All metrics, capped rule" in "\n".join(markdown(rep, figures=False))


def test_unknown_rule_is_one_line_naming_the_rules():
    s, pc, q, c = _problem()
    with pytest.raises(ValueError, match=r"rule must be one of \('budget', 'lambda'\), got 'x'"):
        rcal.calibration_curve(s, pc, q, c, "x")
    with pytest.raises(ValueError, match="rule must be one of"):
        rules.choose("x", s, pc, 1.0)


def test_infeasible_prompts_per_rule():
    pc = np.array([[1.0, 2.0], [0.1, 3.0]], np.float32)
    assert rules.get_rule("budget").infeasible(pc, 0.5).tolist() == [True, False]
    assert rules.get_rule("lambda").infeasible(pc, 0.5).tolist() == [False, False]
    # The most-spending parameter: the largest budget, λ = 0.
    assert rules.get_rule("budget").top([0.1, 3.0, 2.0]) == 1
    assert rules.get_rule("lambda").top([0.5, 0.0, 2.0]) == 1


def test_policy_fields_map_to_rules_and_are_checked():
    assert rules.rule_of_flag("budget").name == "budget"
    assert rules.rule_of_flag("wtp").name == "lambda"
    assert rules.rule_of_flag("target_cost") is None
    rules.check_flag("wtp", 0.0)
    rules.check_flag("target_cost", -1.0)  # not a rule parameter: checked elsewhere
    with pytest.raises(ValueError, match=r"^budget must be > 0 USD per prompt, got 0$"):
        rules.check_flag("budget", 0)
    with pytest.raises(ValueError, match=r"^wtp \(λ\) must be >= 0, got -0.5$"):
        rules.check_flag("wtp", -0.5)
