"""The absl apps, run as a user runs them (subprocesses), on tiny settings."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from _apps import app_env, run_app, run_module

from jaxroute import data as jd

pytestmark = pytest.mark.slow  # docs/testing.md

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = ["--config=jaxroute/configs/base.py:tiny", "--config.seeds=(0,)"]


def run(module, *args, check=True, timeout=600):
    return run_app(module, *args, check=check, timeout=timeout)


def test_inspect_data_prints_summary_json():
    out = run("inspect_data", "--data_path=synthetic:n_prompts=300", "--json").stdout
    (line,) = out.strip().splitlines()  # one JSON object, nothing else
    summary = json.loads(line)
    assert summary["n_prompts"] == 300 and summary["n_models"] == 11
    d = jd.synthetic(n_prompts=300)
    q = d.quality
    s = np.sort(q, axis=1)
    assert summary["top2_tie_share"] == pytest.approx((s[:, -1] == s[:, -2]).mean())
    strong = d.models.index(jd.STRONG_MODEL)
    assert summary["mean_cost"][jd.STRONG_MODEL] == pytest.approx(d.cost[:, strong].mean(), 1e-5)
    best = q.max(1, keepdims=True)
    oracle = np.where(q == best, d.cost, np.inf).argmin(1)
    assert summary["oracle"]["quality"] == pytest.approx(best.mean(), 1e-6)
    assert summary["oracle"]["strong_model_share"] == pytest.approx((oracle == strong).mean())
    assert summary["best_single"]["model"] == jd.STRONG_MODEL


def test_inspect_data_readable_by_default():
    out = run("inspect_data", "--data_path=synthetic:n_prompts=300").stdout
    assert out.startswith("300 prompts, 11 models, 6 tasks")
    d = jd.synthetic(n_prompts=300)
    strong = d.models.index(jd.STRONG_MODEL)
    row = next(ln for ln in out.splitlines() if ln.startswith(jd.STRONG_MODEL))
    assert row.split()[1] == f"{d.quality[:, strong].astype(np.float64).mean():.4g}"
    assert "task" in out and "mt-bench" in out


def test_help_exits_0_with_the_apps_own_flags():
    for module, own in (
        ("train", ["--config", "--config_help", "--workdir", "--data_path"]),
        ("evaluate", ["--workdir", "--data_path", "--output_dir", "--split", "--json"]),
        ("inspect_data", ["--data_path", "--data_format", "--json"]),
        ("embed", ["--data_path", "--output", "--encoder_dir"]),
    ):
        proc = run(module, "--help")
        for flag in own:
            assert f"  {flag}:" in proc.stdout, (module, flag)
        assert "equirouter_synthetic" in proc.stdout  # packaged flagfile names


def test_config_help_lists_every_field_from_any_directory(tmp_path):
    from jaxroute.launch.config_flag import resolve, split_overrides
    from jaxroute.launch.config_help import config_fields

    hinge = ["--config.routers.hinge.model=linear", "--config.routers.hinge.loss=pairwise_hinge"]
    argv = ["--config=base:tiny", "--config_help", *hinge]
    proc = run_module("jaxroute.launch.train", argv, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fields = config_fields(resolve("base:tiny", split_overrides(hinge)[1]))
    assert len(fields) > 40
    for key, value, doc in fields:
        assert f"  {key} = {value}" in proc.stdout, key
        assert doc, f"{key} has no description"
    assert "data.path = 'synthetic:n_prompts=400,feature_dim=16'" in proc.stdout
    # The loss keywords the new router could set (from the loss's signature), the losses
    # and the router kinds of the tables.
    assert "  routers.hinge.loss_kwargs.margin = 1.0" in proc.stdout
    assert "  routers.equirouter.loss_kwargs.rank_weight = 50.0" in proc.stdout
    assert re.search(r"^  pairwise_hinge \[pairwise\] +.*margin=1.0", proc.stdout, re.M)
    assert re.search(r"^  knn +k nearest.*fields: k, cost_source", proc.stdout, re.M)
    assert "hparams.KEY='(v1,v2,v3)'" in proc.stdout


def test_packaged_names_resolve_from_any_directory(tmp_path, monkeypatch):
    from jaxroute.launch import common

    monkeypatch.chdir(tmp_path)
    assert common.resolve_config("base:tiny") == f"{common.CONFIG_DIR / 'base.py'}:tiny"
    assert common.resolve_config("jaxroute/configs/paper.py").endswith("configs/paper.py")
    want = str(common.FLAGS_DIR / "equirouter_synthetic.flags")
    for name in ("equirouter_synthetic", "launch/equirouter_synthetic.flags"):
        assert common.resolve_flagfile(name) == want
    with pytest.raises(ValueError, match="no packaged flagfile 'nope'"):
        common.resolve_flagfile("nope")
    bad = run_module("jaxroute.launch.train", ["--flagfile=nope", "--workdir=w"], cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --flagfile=nope")


def test_inspect_data_bad_input_exits_with_message(tmp_path):
    d = jd.synthetic(n_prompts=30)
    df = jd.to_wide_frame(d)
    m = d.models[2]
    df[m] = df[m].astype(object)
    df.loc[4, m] = "oops"
    df.to_csv(tmp_path / "bad.csv")
    proc = run("inspect_data", f"--data_path={tmp_path / 'bad.csv'}", check=False)
    assert proc.returncode != 0
    assert m in proc.stderr and d.sample_ids[4] in proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_evaluate_route(tmp_path):
    """The real entry points: train (resumable), evaluate reproduces report.json, route."""
    wd = tmp_path / "w"
    args = [
        *TINY,
        "--config.data.path=synthetic:n_prompts=160,feature_dim=8",
        "--config.features.source=encoder",
        "--config.run_routers=equirouter,knn",
        "--config.train.epochs=2",
        f"--workdir={wd}",
    ]
    out = run("train", *args).stdout
    assert "| equirouter |" in out
    report = json.loads((wd / "report.json").read_text())
    assert set(report["routers"]) == {"equirouter", "knn"}
    assert np.isfinite(report["routers"]["equirouter"]["nauc"])
    for fig in ("quality_vs_cost.png", "strong_call_rate.png", "model_shares.png"):
        assert (wd / fig).stat().st_size > 1000
    assert sorted(os.listdir(wd / "checkpoints/equirouter")) == ["1", "2"]
    lines = (wd / "metrics.jsonl").read_text().splitlines()
    run("train", *args)  # resumes: nothing left to train, same report
    assert (wd / "metrics.jsonl").read_text().splitlines() == lines
    again = json.loads((wd / "report.json").read_text())
    assert again["routers"] == report["routers"]

    out = run("evaluate", f"--workdir={wd}", f"--output_dir={tmp_path / 'e'}", "--json").stdout
    rebuilt = json.loads((tmp_path / "e/report.json").read_text())
    assert rebuilt["routers"] == report["routers"]
    (line,) = out.strip().splitlines()  # --json: one object, the metrics without curves
    summary = json.loads(line)
    knn = report["routers"]["knn"]
    assert summary["routers"]["knn"]["nauc"] == knn["nauc"]
    assert summary["routers"]["knn"]["lambda"]["nauc"] == knn["lambda"]["nauc"]
    assert "curve" not in summary["routers"]["knn"]["lambda"]

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Write a python function to sort a list."}\n"What is 2+2?"\n')
    proc = run("route", f"--workdir={wd}", "--budget=0.01", f"--prompts_file={prompts}", "Hi")
    rows = [json.loads(x) for x in proc.stdout.strip().splitlines()]
    assert [r["prompt"] for r in rows] == [
        "Hi",
        "Write a python function to sort a list.",
        "What is 2+2?",
    ]
    for r in rows:
        assert r["model"] in report["dataset"]["models"]
        assert len(r["scores"]) == 11
        assert r["predicted_cost"] == pytest.approx(r["predicted_costs"][r["model"]])
    bad = run("route", f"--workdir={wd}", "--budget=0.01", "--wtp=1", "x", check=False)
    assert bad.returncode != 0 and "exactly one" in bad.stderr

    # The λ rule: the chosen model maximises score − λ · predicted cost.
    wtp = run("route", f"--workdir={wd}", "--wtp=30", "Hi").stdout.strip().splitlines()
    (row,) = [json.loads(x) for x in wtp]
    models = list(row["scores"])
    value = [row["scores"][m] - 30 * row["predicted_costs"][m] for m in models]
    assert row["model"] == models[int(np.argmax(value))]

    # evaluate on the training part, and on other data (the whole of it is the test set).
    run("evaluate", f"--workdir={wd}", "--split=train", f"--output_dir={tmp_path / 't'}")
    on_train = json.loads((tmp_path / "t/report.json").read_text())["dataset"]
    assert on_train["evaluated_on"] == "train"
    assert on_train["n_evaluated"] == report["dataset"]["n_train"] == 32
    other = "synthetic:n_prompts=90,feature_dim=8,seed=5"
    run("evaluate", f"--workdir={wd}", f"--data_path={other}", f"--output_dir={tmp_path / 'o'}")
    ds = json.loads((tmp_path / "o/report.json").read_text())["dataset"]
    assert ds["n_prompts"] == ds["n_evaluated"] == ds["n_test"] == 90 and "seed=5" in ds["source"]


def test_flagfiles_name_existing_config_fields():
    """Every --config.a.b=... in launch/*.flags names a field of its config."""
    import importlib.util

    for flagfile in sorted((ROOT / "jaxroute/launch/flags").glob("*.flags")):
        lines = [ln.strip() for ln in flagfile.read_text().splitlines()]
        lines = [ln for ln in lines if ln.startswith("--")]
        spec = next(ln for ln in lines if ln.startswith("--config="))
        path, _, arg = spec.removeprefix("--config=").partition(":")
        mod_spec = importlib.util.spec_from_file_location("cfg", ROOT / path)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        config = mod.get_config(arg or None)
        for ln in lines:
            m = re.match(r"--config\.([\w.]+)=", ln)
            if m:
                node = config
                for part in m.group(1).split("."):
                    assert part in node, f"{flagfile.name}: {m.group(1)} is not a config field"
                    node = node[part]
        assert any(ln.startswith("--workdir=") for ln in lines), flagfile.name


def test_benchmark_quick_json_prints_one_object():
    proc = run("benchmark", "--only=sweep,train_vmap", "--quick", "--json")
    (line,) = proc.stdout.strip().splitlines()  # without --json: a readable line each first
    result = json.loads(line)
    for name in ("sweep", "train_vmap"):
        for key in ("ratio", "baseline_s", "jaxroute_s", "peak_mem_mb"):
            assert np.isfinite(result[name][key]), (name, key)


def test_diagnose_reports_ties_noise_and_feature_diversity(tmp_path):
    d = jd.synthetic(n_prompts=200, seed=2)
    np.save(tmp_path / "f.npy", d.features)
    (tmp_path / "f.ids").write_text("\n".join(d.sample_ids) + "\n")
    proc = run(
        "diagnose",
        "--data_path=synthetic:n_prompts=200,seed=2",
        f"--features={tmp_path / 'f.npy'}",
        "--json",
        "--noise_scales=0,0.5",
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(out["tasks"]) == set(d.task_names)
    for task, e in out["tasks"].items():
        q = d.quality[d.tasks == task]
        s = np.sort(q, axis=1)
        assert e["top2_tie_share"] == pytest.approx((s[:, -1] == s[:, -2]).mean())
        assert 0 < e["mean_within_task_cosine"] < 1
    rates = out["noise_injection"]["strong_call_rate"]
    assert len(rates) == 2 and rates[0] < rates[1]


CLI_IMPORTS = """
import runpy, sys
sys.argv = ["jaxroute", *sys.argv[1:]]
try:
    runpy.run_module("jaxroute.cli", run_name="__main__")
except SystemExit as e:
    print("exit", e.code)
print([m for m in ("jax", "jaxroute.launch.app") if m in sys.modules])
"""


@pytest.mark.parametrize("argv,code", [(["--help"], 0), (["nope"], 2)])
def test_cli_answers_help_and_unknown_apps_without_importing_jax(argv, code):
    # A plain interpreter (a forked one has JAX imported already).
    proc = subprocess.run(
        [sys.executable, "-c", CLI_IMPORTS, *argv], cwd=ROOT, env=app_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.stdout.splitlines()[-2:] == [f"exit {code}", "[]"], proc.stdout + proc.stderr
    assert "  train " in (proc.stdout if code == 0 else proc.stderr)
