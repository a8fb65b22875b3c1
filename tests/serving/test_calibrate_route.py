"""``calibrate`` and ``route`` on a real tiny workdir: exact choice, honest test report."""

from __future__ import annotations

import json
import shutil
import time

import ml_collections
import numpy as np
import pytest

from jaxroute import serving
from jaxroute import train as jtrain
from jaxroute.configs import base
from jaxroute.configs.best import BEST
from jaxroute.models import router_spec
from jaxroute.routing import calibrate as rcal

# One worker runs them all under xdist (--dist loadgroup): one workdir, one server.
pytestmark = pytest.mark.xdist_group("serving")
pytestmark = [pytestmark, pytest.mark.slow]  # docs/testing.md


def _choice(s, c, rule, p):
    p = np.float32(p)
    if rule == "budget":
        ok = c <= p
        return np.where(ok.any(1), np.argmax(np.where(ok, s, -np.inf), 1), c.argmin(1))
    return np.argmax(s - p * c, axis=1)


def _mean_cost(arrays, rule, p):
    s, c, _, cost = arrays
    ch = _choice(s, c, rule, p)
    return cost.astype(np.float64)[np.arange(len(ch)), ch].mean()


@pytest.fixture(scope="module")
def scores(workdir):
    return serving.calibration_scores(workdir)


def test_calibrate_app_picks_the_best_budget_and_reports_test(workdir, scores, app_runner):
    info, cal, test = scores
    assert info["split"] == "val" and info["n_calibration"] == 18  # 30% of 60 held back
    c = cal[1]
    # Brute force: every budget where a choice can change, and one below them all.
    u = np.unique(c)
    budgets = np.concatenate([[u[0] / 2], u])
    costs = np.array([_mean_cost(cal, "budget", b) for b in budgets])
    target = float(np.median(costs))
    proc = app_runner("calibrate", f"--workdir={workdir}", f"--target_cost={target!r}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("target", "realised", "ci_low", "ci_high", "rule", "parameter", "drift"):
        assert key in report
    assert report["rule"] == "budget" and report["calibration_split"] == "val"
    got = _mean_cost(cal, "budget", report["parameter"])
    assert got == pytest.approx(report["calibration_value"], abs=1e-12)
    assert got <= target
    best = costs[costs <= target].max()
    assert got == pytest.approx(best, abs=1e-12)  # no budget does better
    realised = _mean_cost(test, "budget", report["parameter"])
    assert report["realised"] == pytest.approx(realised, abs=1e-12)
    assert report["ci_low"] <= realised <= report["ci_high"]
    assert report["drift"] == pytest.approx(realised - target, abs=1e-12)
    stored = serving.read_calibration(workdir)
    assert stored["last"]["parameter"] == report["parameter"]


def test_share_target_with_the_lambda_rule(workdir, scores):
    info, cal, test = scores
    m = info["models"].index(info["strong_model"])
    report = serving.calibrate_workdir(
        workdir, kind="share", target=0.25, rule="lambda", n_resamples=300
    )
    assert report["model"] == info["strong_model"] and report["rule"] == "lambda"
    share = (_choice(cal[0], cal[1], "lambda", report["parameter"]) == m).mean()
    assert share == pytest.approx(report["calibration_value"]) and share <= 0.25
    # No λ ≥ 0 gives a share closer to 0.25 from below (brute force over a fine grid
    # and the envelope's breakpoints).
    lams = np.concatenate(
        [np.linspace(0, 50, 2001), rcal.lambda_breakpoints(cal[0], cal[1]) * (1 + 1e-4)]
    )
    shares = np.array([(_choice(cal[0], cal[1], "lambda", x) == m).mean() for x in lams])
    assert share == pytest.approx(shares[shares <= 0.25].max())
    on_test = (_choice(test[0], test[1], "lambda", report["parameter"]) == m).mean()
    assert report["realised"] == pytest.approx(on_test)


def test_calibration_needs_a_held_back_split(workdir, tmp_path):
    wd = tmp_path / "w"
    shutil.copytree(workdir, wd)
    cfg = json.loads((wd / "config.json").read_text())
    cfg["train"]["val_fraction"] = 0.0
    (wd / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="val_fraction"):
        serving.calibrate_workdir(wd, kind="share", target=0.2)
    # Asked for explicitly, the (fitted) training prompts calibrate, and the report says so.
    report = serving.calibrate_workdir(wd, kind="share", target=0.2, split="train", n_resamples=50)
    assert report["calibration_split"] == "train" and report["n_calibration"] == 60
    assert report["calibration_value"] <= 0.2


def test_route_app_targets_flags_and_refusals(workdir, app_runner):
    long_prompt = "word " * 400
    proc = app_runner(
        "route", f"--workdir={workdir}", "--target_share=0.3", "Hi there", long_prompt
    )
    rows = [json.loads(x) for x in proc.stdout.strip().splitlines()]
    want = serving.resolve_target(
        serving.read_calibration(workdir),
        workdir=workdir,
        router="mlp",
        seed=0,
        kind="share",
        target=0.3,
    )
    assert [r["parameter"] for r in rows] == [want.parameter] * 2
    assert [r["truncated"] for r in rows] == [False, True]
    assert rows[0]["target"]["kind"] == "share"
    # Refusals: one line on stderr, exit 2; the empty prompt before anything is loaded.
    t0 = time.monotonic()
    bad = app_runner("route", f"--workdir={workdir}", "--budget=0.01", "ok", " ", check=False)
    assert bad.returncode == 2 and "prompt 1 is empty" in bad.stderr
    assert "checkpoint" not in bad.stderr and time.monotonic() - t0 < 60
    bad = app_runner("route", f"--workdir={workdir}", "--budget=0", "x", check=False)
    assert bad.returncode == 2 and "budget must be > 0" in bad.stderr
    bad = app_runner(
        "route", f"--workdir={workdir}", "--target_cost=0.001", "--wtp=1", "x", check=False
    )
    assert bad.returncode == 2 and "exactly one" in bad.stderr


# ---------------------------------------------------------------- fit/predict routers
# kNN and ``best`` (the taskprior kind) are fitted, not trained: the run stores their
# states in W/fitted and route / calibrate restore them (no training data needed).

PROMPTS = [  # four: a power of two, so route computes on exactly these rows
    "What is the capital of France?",
    "Write a quicksort in Python.",
    "Prove that the square root of 2 is irrational.",
    "Summarise the plot of Hamlet in two sentences.",
]


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    """A tiny run of kNN and a small ``best`` on encoder features (no cost model)."""
    c = base.get_config("tiny")
    c.data.path = "synthetic:n_prompts=300,feature_dim=8"  # the session workdir's prompts
    c.features.source = "encoder"
    c.seeds = (0,)
    c.train.val_fraction = 0.3
    c.cost_model.enabled = False
    small = {"blend_k": 8, "mlp_hidden": 16, "mlp_steps": 50, "cv_folds": 3, "steps": 100}
    c.routers = ml_collections.ConfigDict(
        {"knn": base.router("knn", k=5), "best": base.router("taskprior", **{**BEST, **small})}
    )
    wd = tmp_path_factory.mktemp("fitted") / "w"
    jtrain.train_and_evaluate(c, wd)
    train = jtrain.make_splits(c, jtrain.load_experiment_data(c)).train[0]
    return wd, c, train


def _in_process(c, train, name, x):
    """The router fitted here, on the run's training part, predicting ``x``."""
    rc = c.routers[name]
    spec = router_spec(rc.model)
    scores, costs = spec.predict_with(spec.fit_state(train, rc), x, rc)
    return np.asarray(scores, np.float32), np.asarray(costs, np.float32)


@pytest.mark.parametrize("name", ["best", "knn", None])
def test_route_app_routes_fitted_routers_as_fitted_in_process(fitted_run, app_runner, name):
    wd, c, train = fitted_run
    assert sorted(p.name for p in (wd / "fitted").iterdir()) == ["best", "knn"]
    x, _ = serving.load_router(wd, router="knn").embed(PROMPTS)
    want = name or "best"  # the headline router: the first of the run's (sorted) routers
    scores, costs = _in_process(c, train, want, x)
    budget = float(np.median(costs))
    args = [f"--workdir={wd}", f"--budget={budget!r}", *PROMPTS]
    rows = [
        json.loads(r)
        for r in app_runner("route", *args, *([f"--router={name}"] if name else []))
        .stdout.strip()
        .splitlines()
    ]
    models = json.loads((wd / "run_info.json").read_text())["models"]
    assert [r["router"] for r in rows] == [want] * 4
    assert [r["model"] for r in rows] == [
        models[j] for j in _choice(scores, costs, "budget", budget)
    ]
    got = np.array([[r["scores"][m] for m in models] for r in rows], np.float32)
    np.testing.assert_array_equal(got, scores)
    got = np.array([[r["predicted_costs"][m] for m in models] for r in rows], np.float32)
    np.testing.assert_array_equal(got, costs)


@pytest.mark.parametrize("name", ["best", "knn"])
def test_calibrate_app_calibrates_fitted_routers(fitted_run, app_runner, name):
    wd, c, train = fitted_run
    info, cal, _ = serving.calibration_scores(wd, router=name)
    assert info["router"] == name and info["split"] == "val"
    # The restored state scores the calibration split as the router fitted here does.
    val = jtrain.make_splits(c, jtrain.load_experiment_data(c)).val[0]
    scores, costs = _in_process(c, train, name, val.features)
    np.testing.assert_array_equal(cal[0], scores)
    np.testing.assert_array_equal(cal[1], costs)
    proc = app_runner(
        "calibrate", f"--workdir={wd}", f"--router={name}", "--target_share=0.5", "--rule=lambda"
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["router"] == name
    m = info["models"].index(info["strong_model"])
    share = (_choice(cal[0], cal[1], "lambda", report["parameter"]) == m).mean()
    assert share == pytest.approx(report["calibration_value"]) and share <= 0.5
    # ... and route resolves the target for that router from the stored curve.
    rows = (
        app_runner(
            "route",
            f"--workdir={wd}",
            f"--router={name}",
            "--target_share=0.5",
            "--rule=lambda",
            PROMPTS[0],
        )
        .stdout.strip()
        .splitlines()
    )
    assert json.loads(rows[0])["parameter"] == report["parameter"]


def test_route_refuses_a_missing_or_stale_fitted_state(fitted_run, tmp_path):
    wd, _, _ = fitted_run
    copy = tmp_path / "w"
    shutil.copytree(wd, copy)
    shutil.rmtree(copy / "fitted" / "knn")
    with pytest.raises(FileNotFoundError, match="no stored state for seed 0.*evaluate"):
        serving.load_router(copy, router="knn")
    record = copy / "fitted" / "best" / "seed_0.json"
    obj = json.loads(record.read_text())
    obj["config"]["blend_k"] = 99
    record.write_text(json.dumps(obj))
    with pytest.raises(
        ValueError, match="seed_0.json: field 'config' does not match router 'best'"
    ):
        serving.load_router(copy, router="best")
    with pytest.raises(ValueError, match="router 'nope' is not a router of .*'best', 'knn'"):
        serving.load_router(copy, router="nope")
