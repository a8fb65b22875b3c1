"""Fault-table rows that go through the workdir guard in fit/evaluate (see test_faults)."""

import time

import numpy as np
import pytest

from jaxroute import data as jd
from jaxroute import train as jtrain
from jaxroute.train import _guard

from .conftest import error_lines, run_app, snapshot, tiny_config
from .test_faults import _corrupt, _holder

pytestmark = pytest.mark.slow  # docs/testing.md


def test_evaluate_app_on_corrupt_checkpoint_prints_one_line(tmp_path):
    c = tiny_config(epochs=2)
    jtrain.train_and_evaluate(c, tmp_path)
    _corrupt(tmp_path / "checkpoints/mlp/2")
    before = snapshot(tmp_path)
    proc = run_app("evaluate", f"--workdir={tmp_path}", f"--output_dir={tmp_path / 'e'}")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert len(error_lines(proc.stderr)) == 1, proc.stderr[-3000:]
    assert "checkpoints/mlp/2 is unreadable" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(tmp_path) == before


def test_data_edited_in_place_is_refused_naming_the_model(tmp_path):
    src = jd.synthetic(n_prompts=120, seed=0, feature_dim=8)
    folder = jd.write_generic(src, tmp_path / "data")
    c = tiny_config(data_path=folder, epochs=1)
    wd = tmp_path / "w"
    jtrain.train_and_evaluate(c, wd)
    assert (wd / "fingerprint.json").exists()
    q = np.load(folder / "quality.npy")
    q[:, 3] = 1.0 - q[:, 3]  # flip one model's scores in the same file
    np.save(folder / "quality.npy", q)
    before = snapshot(wd)
    with pytest.raises(_guard.DataMismatch) as e:
        jtrain.train_and_evaluate(c, wd)
    assert f"quality of ['{src.models[3]}']" in str(e.value) and str(wd) in str(e.value)
    with pytest.raises(_guard.DataMismatch):
        jtrain.evaluate(jtrain.read_config(wd), wd, output_dir=tmp_path / "e")
    assert snapshot(wd) == before  # report.json, checkpoints, metrics untouched
    assert not (tmp_path / "e").exists()


def test_second_run_exits_at_once_naming_the_holder(tmp_path):
    wd = tmp_path / "w"
    holder = _holder(wd)
    try:
        before = snapshot(wd)
        t0 = time.perf_counter()
        with pytest.raises(_guard.WorkdirBusy) as e:
            jtrain.train_and_evaluate(tiny_config(), wd)
        assert time.perf_counter() - t0 < 5
        assert f"pid {holder.pid}" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(_guard.WorkdirBusy, match=f"pid {holder.pid}"):
            _guard.ensure_not_training(wd)  # what evaluate and route check
        proc = run_app("train", "--config=jaxroute/configs/base.py:tiny", f"--workdir={wd}")
        assert proc.returncode == 2 and f"pid {holder.pid}" in proc.stderr
        assert len(error_lines(proc.stderr)) == 1
        assert snapshot(wd) == before  # nothing written by the refused runs
    finally:
        holder.kill()
        holder.wait()


def test_rows_reversed_rerun_gives_the_same_report_and_an_edited_task_is_refused(tmp_path):
    src = jd.synthetic(n_prompts=120, seed=0, feature_dim=8)
    folder = tmp_path / "data"
    jd.write_generic(src, folder)
    c = tiny_config(data_path=folder, epochs=1)
    wd = tmp_path / "w"
    first = jtrain.train_and_evaluate(c, wd)
    report_before = (wd / "report.json").read_text()
    jd.write_generic(src.subset(np.arange(120)[::-1]), folder)  # same rows, reversed
    again = jtrain.train_and_evaluate(c, wd)  # accepted: the first run's order and splits
    assert (wd / "report.json").read_text() == report_before
    assert again["routers"]["mlp"]["peak"] == first["routers"]["mlp"]["peak"]
    tasks = np.asarray(src.tasks).astype(object).copy()
    tasks[5] = tasks[5] + "_edited"
    jd.write_generic(src.replace(tasks=tasks), folder)  # one task label edited in place
    before = snapshot(wd)
    with pytest.raises(_guard.DataMismatch, match=r"task labels \(eval_name\) changed"):
        jtrain.train_and_evaluate(c, wd)
    assert snapshot(wd) == before
