"""Report tests: JSON schema, metrics recomputed from the stored curve, figures."""

import json

import numpy as np
import pytest

from jaxroute.report import aggregate_seeds, build_report, headline_table, write_report
from jaxroute.routing import (
    curve_metrics,
    dataset_summary,
    evaluate_router,
    oracle_router,
    reference_results,
)


def problem(n=120, m=4, seed=0):
    rng = np.random.default_rng(seed)
    q = (rng.random((n, m)) < np.linspace(0.4, 0.9, m)).astype(np.float32)
    c = (np.geomspace(1e-4, 1e-2, m) * rng.uniform(0.5, 1.5, (n, m))).astype(np.float32)
    return q, c


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    q, c = problem()
    names = [f"m{j}" for j in range(q.shape[1])]
    tasks = ["a"] * 70 + ["b"] * 50
    ds = dataset_summary(q, c, names, tasks)
    rng = np.random.default_rng(1)
    routers = {}
    # A collapsing regressor (mean quality + noise) over two seeds.
    routers["regressor"] = [
        evaluate_router(
            q.mean(0)[None, :] + rng.normal(0, 0.05, q.shape).astype(np.float32),
            c,
            q,
            c,
            budgets=("log", 20),
        )
        for _ in range(2)
    ]
    # A router that never reaches the best single model (always the cheapest model).
    s = np.zeros_like(q)
    s[:, 0] = 1.0
    routers["cheap_only"] = [evaluate_router(s, c, q, c, budgets=("log", 20))]
    routers["oracle_like"] = [evaluate_router(*oracle_router(q, c), q, c, budgets=("log", 20))]
    results = reference_results(q, c, budgets=("log", 20), model_names=names)
    ref = {name: aggregate_seeds([res]) for name, res in results.items()}
    work = tmp_path_factory.mktemp("report")
    paths = write_report(work, ds, routers, ref, names, ds["strong_model"])
    return q, c, ds, routers, paths


def test_files_and_schema(built):
    q, c, ds, routers, paths = built
    for key in ("json", "markdown", "quality_vs_cost", "strong_call_rate", "model_shares"):
        assert paths[key].endswith((".json", ".md", ".png"))
        with open(paths[key], "rb") as f:
            assert len(f.read()) > 100
    with open(paths["json"]) as f:
        text = f.read()
    assert "Infinity" not in text and "NaN" not in text
    rep = json.loads(text)
    assert set(rep) >= {"dataset", "routers", "reference"}
    for key in ("n_prompts", "n_models", "models", "tasks", "mean_quality", "mean_cost"):
        assert key in rep["dataset"]
    assert rep["dataset"]["tasks"] == {"a": 70, "b": 50}
    assert set(rep["reference"]) >= {"oracle", "best_single", "zero_router"}
    reg = rep["routers"]["regressor"]
    for key in ("peak", "cost_at_best_single", "cost_ratio", "nauc", "aiq", "rci"):
        assert key in reg and f"{key}_std" in reg
    assert reg["reached_best_single"].endswith("/2") and len(reg["seeds"]) == 2
    assert set(reg["curve"]) >= {"budget", "cost", "quality", "strong_call_rate"}
    cheap = rep["routers"]["cheap_only"]
    assert cheap["cost_ratio"] is None and cheap["best_single_reached"] is False
    assert cheap["reached_best_single"] == "0/1"
    assert rep["reference"]["best_single"]["cost_ratio"] == pytest.approx(1.0, abs=1e-12)
    assert rep["reference"]["best_single"]["best_single_reached"] is True


def _staircase(cost, quality):
    """Points by cost, each kept if it beats every cheaper one (the test's own loop)."""
    pts = sorted(zip(cost, quality, strict=True), key=lambda p: (p[0], -p[1]))
    out, best = [], -np.inf
    for c, q in pts:
        if q > best:
            out.append((c, q))
            best = q
    return out


def _affordable(stairs, budget):
    return max([q for c, q in stairs if c <= budget], default=0.0)


def _nauc_aiq(cost, quality, low, high):
    stairs = _staircase(cost, quality)
    pts = [(low, _affordable(stairs, low))]
    pts += [(c, q) for c, q in stairs if low < c < high]
    pts += [(high, _affordable(stairs, high))]
    xs, ys = np.array(pts).T
    nauc = np.trapezoid(ys, xs) / (high - low)
    hull = []  # upper hull, monotone chain
    for p in pts:
        while len(hull) >= 2 and (hull[-1][0] - hull[-2][0]) * (p[1] - hull[-2][1]) >= (
            hull[-1][1] - hull[-2][1]
        ) * (p[0] - hull[-2][0]):
            hull.pop()
        hull.append(p)
    hx, hy = np.array(hull).T
    return nauc, np.trapezoid(hy, hx) / (high - low)


def test_metrics_recomputed_from_curve(built):
    """Every seed's metrics from its stored curve, recomputed with the test's own NumPy
    (METHOD.md §2), not with the library's metric functions."""
    _, _, ds, _, paths = built
    rep = json.loads(open(paths["json"]).read())
    bs = rep["dataset"]["best_single"]
    low, high = rep["dataset"]["cost_bounds"]
    for name, entry in rep["routers"].items():
        for seed in entry["seeds"]:
            cost, quality = seed["curve"]["cost"], seed["curve"]["quality"]
            assert seed["peak"] == max(quality), name
            reach = [c for c, q in zip(cost, quality, strict=True) if q >= bs["quality"] - 1e-9]
            if reach:
                assert seed["cost_at_best_single"] == pytest.approx(min(reach), rel=1e-12)
                assert seed["cost_ratio"] == pytest.approx(min(reach) / bs["cost"], rel=1e-12)
            else:
                assert seed["cost_at_best_single"] is None and seed["cost_ratio"] is None
            nauc, aiq = _nauc_aiq(cost, quality, low, high)
            assert seed["nauc"] == pytest.approx(nauc, rel=1e-12), name
            assert seed["aiq"] == pytest.approx(aiq, rel=1e-12), name
            assert seed["strong_call_rate_at_max_budget"] == pytest.approx(
                seed["curve"]["strong_call_rate"][int(np.argmax(seed["curve"]["budget"]))]
            )
            if seed["cost_at_best_single"] is None:
                assert seed["strong_call_rate_at_best_single"] is None
            else:  # the call rate at the C* point of the curve
                cost = np.asarray(seed["curve"]["cost"])
                at = np.flatnonzero(cost == seed["cost_at_best_single"])
                rates = np.asarray(seed["curve"]["strong_call_rate"])[at]
                assert seed["strong_call_rate_at_best_single"] in rates.tolist()
        means = [s["nauc"] for s in entry["seeds"]]
        assert entry["nauc"] == pytest.approx(np.mean(means), rel=1e-12)


def test_headline_table(built):
    paths = built[4]
    rep = json.loads(open(paths["json"]).read())
    table = headline_table(rep)
    assert "| regressor |" in table and "±" in table and "*oracle*" in table
    md = open(paths["markdown"]).read()
    # Headline (both rules side by side) and one full table per rule.
    assert md.count("| cheap_only |") == 3
    assert "CR B | CR λ" in table
    for key in ("quality_vs_cost", "strong_call_rate", "model_shares"):
        assert f"({key}.png)" in md  # every figure embedded


def test_lambda_rule_metrics_recomputed_from_stored_curve(built):
    """Every λ-rule metric equals the one recomputed from the stored (thinned) curve and
    the one of the whole breakpoint sweep."""
    from jaxroute.routing import lambda_grid, lambda_sweep

    q, c, _, _, paths = built
    rep = json.loads(open(paths["json"]).read())
    bs = rep["dataset"]["best_single"]
    bounds = tuple(rep["dataset"]["cost_bounds"])
    keys = ("peak", "nauc", "aiq", "cost_at_best_single", "cost_ratio")
    for name, entry in list(rep["routers"].items()) + list(rep["reference"].items()):
        lam = entry["lambda"]
        for key in keys:
            assert key in lam, (name, key)
        for seed in lam.get("seeds", [lam]):
            got = curve_metrics(
                seed["curve"]["cost"],
                seed["curve"]["quality"],
                best_single_quality=bs["quality"],
                best_single_cost=bs["cost"],
                bounds=bounds,
            )
            for key in keys:
                if seed[key] is None:
                    assert got[key] is None, (name, key)
                else:
                    assert got[key] == pytest.approx(seed[key], rel=1e-12), (name, key)
    # The thinned curve keeps every metric of the whole sweep (a noisy regressor).
    rng = np.random.default_rng(5)
    s = (q.mean(0)[None, :] + rng.normal(0, 0.05, q.shape)).astype(np.float32)
    full = lambda_sweep(s, c, q, c, lambda_grid(s, c))
    want = curve_metrics(
        full.cost,
        full.quality,
        best_single_quality=bs["quality"],
        best_single_cost=bs["cost"],
        bounds=bounds,
    )
    thin = evaluate_router(s, c, q, c, budgets=("log", 20), lambda_points=5)["lambda"]
    assert len(thin["curve"]["lambda"]) < len(full.cost) / 2
    for key in keys:
        assert thin[key] == pytest.approx(want[key], rel=1e-12), key
    lam = rep["routers"]["oracle_like"]["lambda"]
    # λ = 0 (first stored point) is the "max budget" end: strong@max read off the curve.
    assert lam["strong_call_rate_at_max_budget"] == lam["curve"]["strong_call_rate"][0]


def test_fitted_choices_are_kept_per_seed_and_tabled(built, tmp_path):
    q, c, ds, routers, paths = built
    fitted = {
        "regressor": [
            {"seed": 0, "weight": np.float32(0.25), "cr": {"0.25": np.inf}, "k": np.int64(3)},
            {"seed": 1, "weight": 0.5, "cr": {"0.25": 0.7}, "k": 3},
        ]
    }
    out = write_report(tmp_path, ds, routers, fitted=fitted, figures=False)
    saved = json.loads(open(out["json"]).read())
    without = json.loads(open(paths["json"]).read())
    assert saved["routers"]["regressor"]["fitted"] == [
        {"seed": 0, "weight": 0.25, "cr": {"0.25": None}, "k": 3},
        {"seed": 1, "weight": 0.5, "cr": {"0.25": 0.7}, "k": 3},
    ]
    for name, entry in saved["routers"].items():  # every other field is as before
        assert "fitted" not in without["routers"][name]
        assert {k: v for k, v in entry.items() if k != "fitted"} == without["routers"][name]
    md = open(out["markdown"]).read()
    assert "### regressor\n\n| seed | weight | k |\n|---|---|---|\n| 0 | 0.25 | 3 |" in md
    assert "### cheap_only" not in md
    assert "Choices made in fit" not in open(paths["markdown"]).read()
    with pytest.raises(ValueError, match="not a router"):
        build_report(ds, routers, fitted={"nobody": [{"seed": 0}]})


def test_aggregate_single_seed_has_no_std():
    q, c = problem(n=40, m=3)
    res = evaluate_router(*oracle_router(q, c), q, c)
    agg = aggregate_seeds([res])
    assert "nauc_std" not in agg and agg["reached_best_single"] == "1/1"
    assert "shares" in agg["curve"] and "shares" not in agg["seeds"][0]["curve"]


def test_thirty_distinct_model_colours():
    from matplotlib.colors import to_rgb

    from jaxroute.report import model_colour

    rgb = np.array([to_rgb(model_colour(j)) for j in range(30)])
    gaps = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(30) * 9
    assert gaps.min() > 0.1  # no two of the first 30 models share (nearly) a colour


def test_references_aggregate_like_routers_and_keep_model_names():
    """Per-seed reference results go through the routers' aggregate_seeds: metric means
    and stds, the best single model's *name* (never a mean of indices), no n_seeds_std."""
    names = ["m0", "m1", "m2", "m3"]
    per_seed = []
    for seed in (0, 1, 2):
        q, c = problem(n=60, seed=seed)
        per_seed.append(reference_results(q, c, budgets=("log", 10), seed=seed, model_names=names))
    best = aggregate_seeds([r["best_single"] for r in per_seed])
    seed_models = [r["best_single"]["model"] for r in per_seed]
    assert all(m in names for m in seed_models)
    assert best["model"] == (seed_models[0] if len(set(seed_models)) == 1 else seed_models)
    assert "model_std" not in best and "n_seeds_std" not in best and best["n_seeds"] == 3
    qualities = [r["best_single"]["quality"] for r in per_seed]
    assert best["quality"] == pytest.approx(np.mean(qualities))
    oracle = aggregate_seeds([r["oracle"] for r in per_seed])
    naucs = [r["oracle"]["nauc"] for r in per_seed]
    assert oracle["nauc"] == pytest.approx(np.mean(naucs), rel=1e-12)
    assert oracle["nauc_std"] == pytest.approx(np.std(naucs), rel=1e-12)
    zero = aggregate_seeds([r["zero_router"] for r in per_seed])
    assert zero["reached_best_single"] == "3/3" and zero["lambda"]["nauc"] == zero["nauc"]


def test_compare_prints_each_workdir_with_the_report_table(built, tmp_path, capsys):
    import pathlib
    import shutil

    from jaxroute.report import compare

    src = pathlib.Path(built[4]["json"])
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(src, tmp_path / name / "report.json")
    assert compare.main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    rep = json.loads(src.read_text())
    assert out.count(headline_table(rep)) == 2 and "**a**" in out and "**b**" in out
    nauc = rep["routers"]["regressor"]["nauc"]
    row = next(ln for ln in out.splitlines() if ln.startswith("| regressor |"))
    assert f"{nauc:.3f}" in row
    assert compare.main(["compare", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
