"""``calibrate`` and ``route`` on a real tiny workdir: exact choice, honest test report."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from jaxroute import serving
from jaxroute.routing import calibrate as rcal

# One worker runs them all under xdist (--dist loadgroup): one workdir, one server.
pytestmark = pytest.mark.xdist_group("serving")


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
