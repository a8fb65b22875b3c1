"""Report tests: JSON schema, metrics recomputed from the stored curve, figures."""

import errno
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb

from jaxroute import _io
from jaxroute.report import (
    aggregate_seeds,
    build_report,
    compare,
    figures,
    headline_table,
    model_colour,
    write_report,
)
from jaxroute.routing import (
    STRONG_MODEL_RULE,
    dataset_summary,
    evaluate_router,
    lambda_grid,
    lambda_sweep,
    oracle_router,
    reference_results,
    strong_model,
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


@pytest.mark.slow
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
    (docs/method.md §2), not with the library's metric functions."""
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


@pytest.mark.slow
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


def _curve_oracle(cost, quality, bs, bounds):
    """peak, C*, CR, nAUC and AIQ of a curve with the test's own NumPy (docs/method.md §2)."""
    reach = [c for c, q in zip(cost, quality, strict=True) if q >= bs["quality"] - 1e-9]
    nauc, aiq = _nauc_aiq(cost, quality, *bounds)
    return {
        "peak": max(quality),
        "cost_at_best_single": min(reach) if reach else None,
        "cost_ratio": min(reach) / bs["cost"] if reach else None,
        "nauc": nauc,
        "aiq": aiq,
    }


def test_lambda_rule_metrics_recomputed_from_stored_curve(built):
    """Every λ-rule metric equals the one the test recomputes (its own NumPy) from the
    stored (thinned) curve and from the whole breakpoint sweep."""
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
            got = _curve_oracle(seed["curve"]["cost"], seed["curve"]["quality"], bs, bounds)
            for key in keys:
                if seed[key] is None:
                    assert got[key] is None, (name, key)
                else:
                    assert got[key] == pytest.approx(seed[key], rel=1e-12), (name, key)
    # The thinned curve keeps every metric of the whole sweep (a noisy regressor).
    rng = np.random.default_rng(5)
    s = (q.mean(0)[None, :] + rng.normal(0, 0.05, q.shape)).astype(np.float32)
    full = lambda_sweep(s, c, q, c, lambda_grid(s, c))
    want = _curve_oracle(full.cost.tolist(), full.quality.tolist(), bs, bounds)
    thin = evaluate_router(s, c, q, c, budgets=("log", 20), lambda_points=5)["lambda"]
    assert len(thin["curve"]["lambda"]) < len(full.cost) / 2
    for key in keys:
        assert thin[key] == pytest.approx(want[key], rel=1e-12), key
    lam = rep["routers"]["oracle_like"]["lambda"]
    # λ = 0 (first stored point) is the "max budget" end: strong@max read off the curve.
    assert lam["strong_call_rate_at_max_budget"] == lam["curve"]["strong_call_rate"][0]


# ------------------------------------------------- the strong model (a three-way price tie)
def tied_problem(n=60):
    """Models 0-2 share the top price; model 0 is the weakest (quality 0.2), model 1 the
    best (0.9); model 3 is cheap. Quality is the same on every prompt."""
    q = np.tile(np.float32([0.2, 0.9, 0.6, 0.5]), (n, 1))
    c = np.tile(np.float32([2e-3, 2e-3, 2e-3, 1e-4]), (n, 1))
    return q, c


def test_three_way_price_tie_tracks_the_best_quality_model_of_the_tier(tmp_path):
    q, c = tied_problem()
    names = ["weak", "best", "mid", "cheap"]
    assert strong_model(c, q) == 1  # not the lowest index of the tier (0, quality 0.2)
    ds = dataset_summary(q, c, names)
    assert ds["strong_model"] == "best"
    always_best = np.zeros_like(q)
    always_best[:, 1] = 1.0  # a router that sends every prompt to 'best'
    res = evaluate_router(always_best, c, q, c, budgets=("log", 10))
    assert res["strong_model"] == 1
    assert res["strong_call_rate_at_max_budget"] == 1.0  # 0.0 when 'weak' was tracked
    assert res["lambda"]["strong_call_rate_at_max_budget"] == 1.0
    paths = write_report(tmp_path, ds, {"r": [res]}, figures=False)
    rep = json.loads(open(paths["json"]).read())
    assert rep["strong_model"] == {
        "model": "best",
        "rule": STRONG_MODEL_RULE,
        "price_tier": ["weak", "best", "mid"],
        "in_best_single_tier": True,
    }
    assert rep["warnings"] == []
    md = open(paths["markdown"]).read()
    assert f"strong model: best ({STRONG_MODEL_RULE})" in md
    # config.eval.strong_model still overrides, and the report says so.
    over = build_report(ds, {"r": [res]}, strong_model="mid")
    assert over["strong_model"]["model"] == "mid"
    assert over["strong_model"]["rule"] == "config.eval.strong_model"


@pytest.mark.slow
def test_warns_when_the_tracked_model_is_outside_the_best_single_tier():
    q = np.tile(np.float32([0.3, 0.9, 0.5]), (20, 1))
    c = np.tile(np.float32([3e-3, 1e-3, 1e-4]), (20, 1))
    ds = dataset_summary(q, c, ["dear", "good", "cheap"])
    res = evaluate_router(q, c, q, c, budgets=("log", 5))
    rep = build_report(ds, {"r": [res]})
    assert rep["strong_model"]["model"] == "dear"
    assert rep["strong_model"]["in_best_single_tier"] is False
    assert len(rep["warnings"]) == 1
    assert "dear is not in the price tier of the best single model good" in rep["warnings"][0]


# ------------------------------------------------- zero costs: a defined metric, one line
@pytest.mark.slow
@pytest.mark.parametrize("all_free", [False, True])
def test_free_best_single_model_gives_null_ratio_and_one_warning(tmp_path, all_free, caplog):
    q, c = problem(n=80, m=3)
    q[:, 2] = 1.0  # model 2 is the best single model ...
    c[:, 2] = 0.0  # ... and free
    if all_free:
        c[:] = 0.0
    names = ["a", "b", "c"]
    ds = dataset_summary(q, c, names)
    res = evaluate_router(*oracle_router(q, c), q, c, budgets=("log", 10))
    results = reference_results(q, c, budgets=("log", 10), model_names=names)
    ref = {k: aggregate_seeds([v]) for k, v in results.items()}
    paths = write_report(tmp_path, ds, {"oracle_like": [res]}, ref)
    rep = json.loads(open(paths["json"]).read())
    entry = rep["routers"]["oracle_like"]
    assert entry["best_single_reached"] is True and entry["cost_at_best_single"] == 0.0
    assert entry["cost_ratio"] is None and entry["lambda"]["cost_ratio"] is None
    assert rep["reference"]["best_single"]["cost_ratio"] is None
    if all_free:
        assert entry["nauc"] is None and entry["aiq"] is None
        assert rep["warnings"] == [
            "every model has zero mean cost: the cost ratio (CR), nAUC and AIQ are "
            "undefined (null) and the routers can only be compared on quality"
        ]
    else:
        assert entry["nauc"] == pytest.approx(1.0)  # quality 1 from the lowest bound on
        assert len(rep["warnings"]) == 2  # also: the free model is not the dearest one
        assert rep["warnings"][1] == (
            "the best single model c has zero mean cost: the cost ratio CR = C*/C_best is "
            "undefined (null); compare the routers on C* (USD) instead"
        )
    assert f"**Warning:** {rep['warnings'][-1]}." in open(paths["markdown"]).read()
    assert f"report: {rep['warnings'][-1]}" in caplog.text  # and on the console
    for key in ("quality_vs_cost", "strong_call_rate", "model_shares"):
        assert open(paths[key], "rb").read(4) == b"\x89PNG"


def test_disk_full_while_writing_keeps_the_previous_report(built, tmp_path, monkeypatch):
    _, _, ds, routers, _ = built
    first = write_report(tmp_path, ds, {"cheap_only": routers["cheap_only"]}, figures=False)
    before = {p: open(p, "rb").read() for p in first.values()}

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_io.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_report(tmp_path, ds, routers)
    assert {p: open(p, "rb").read() for p in first.values()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


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


@pytest.mark.slow
def test_figure_labels_fit_with_long_model_names(tmp_path, monkeypatch):
    """Every tick label and axis label of every figure lies inside the figure, and no
    two panels' labels overlap (the two-panel figures once cut and crossed them)."""
    drawn = {}
    monkeypatch.setattr(
        figures, "atomic_savefig", lambda path, fig, **kw: drawn.setdefault(path, fig)
    )
    q, c = problem(n=80, m=3)
    names = ["llama-3.1-nemotron-51b-instruct-long-name", "meta/code-llama-34b", "x" * 40]
    ds = dataset_summary(q, c, names)
    routers = {
        f"a_router_with_a_long_name_{k}": [
            evaluate_router(q + np.float32(0.1 * k), c, q, c, budgets=("log", 12)) for _ in range(2)
        ]
        for k in range(3)
    }
    write_report(tmp_path, ds, routers, model_names=names)
    assert len(drawn) == 3
    for path, fig in drawn.items():
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        width, height = fig.bbox.width, fig.bbox.height
        # Each panel with the labels it draws (ticks, axis labels, title).
        boxes = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]
        boxes += [t.get_window_extent(renderer) for t in (fig._suptitle, fig._supxlabel) if t]
        boxes += [leg.get_window_extent(renderer) for leg in fig.legends]
        for box in boxes:
            assert box.x0 >= -1 and box.x1 <= width + 1, (path, box)
            assert box.y0 >= -1 and box.y1 <= height + 1, (path, box)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not a.overlaps(b), (path, a, b)
