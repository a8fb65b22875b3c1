"""The fault table of docs/reliability.md: one small test per row.

Each test injects the fault, checks the one-line message and checks that nothing was
lost, overwritten or mixed (file hashes before and after, markers that must not exist).
"""

import errno
import json
import logging
import os
import pickle
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxroute import data as jd
from jaxroute import train as jtrain
from jaxroute.data._pickle import read_pickle_frame
from jaxroute.encoders import load_features
from jaxroute.launch import common
from jaxroute.train import _guard
from jaxroute.train import _trainer as T
from jaxroute.train.checkpoint import Checkpointer, CheckpointError

from .conftest import error_lines, evil_pickle, run_app, snapshot, tiny_config


# ---------------------------------------------------------------- 1. pickles run no code
@pytest.mark.parametrize("name", ["a_first.pkl", "z_last.pkl"])  # format detection / merge
def test_crafted_pickle_beside_good_csv_runs_nothing(tmp_path, good_csv, name):
    marker = tmp_path / "MARKER"
    evil = evil_pickle(good_csv.parent / name, marker)
    with pytest.raises(jd.DataError, match="refused to unpickle") as e:
        jd.load_data(good_csv.parent)
    assert str(evil) in str(e.value) and "posix.system" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(jd.DataError, match="refused to unpickle"):
        jd.load_data(evil)  # the file given directly
    assert not marker.exists()


def test_code_hidden_inside_a_dataframe_pickle_runs_nothing(tmp_path, good_csv):
    from .conftest import Evil

    marker = tmp_path / "MARKER"
    df = pd.read_csv(good_csv)
    df["prompt"] = [Evil(marker)] * len(df)
    (tmp_path / "df.pkl").write_bytes(pickle.dumps(df, protocol=5))
    with pytest.raises(jd.DataError, match="refused to unpickle"):
        jd.load_data(tmp_path / "df.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [4, 5])
def test_routerbench_dataframe_pickles_still_load(tmp_path, good_csv, protocol):
    df = pd.read_csv(good_csv)
    df["eval_name"] = df["eval_name"].astype("category")  # a non-trivial column type
    df["prompt"] = df["prompt"].astype(object)
    with open(tmp_path / "rb.pkl", "wb") as f:
        pickle.dump(df, f, protocol=protocol)
    pd.testing.assert_frame_equal(read_pickle_frame(tmp_path / "rb.pkl"), df)
    got, want = jd.load_data(tmp_path / "rb.pkl"), jd.load_data(good_csv)
    np.testing.assert_array_equal(got.quality, want.quality)
    np.testing.assert_array_equal(got.cost, want.cost)
    assert list(got.sample_ids) == list(want.sample_ids)


@pytest.mark.slow
def test_inspect_data_on_pickle_folder_one_line_exit_2(tmp_path, good_csv):
    marker = tmp_path / "MARKER"
    evil_pickle(good_csv.parent / "extra.pkl", marker)
    proc = run_app("inspect_data", f"--data_path={good_csv.parent}")
    assert proc.returncode == 2
    assert error_lines(proc.stderr) == [
        next(ln for ln in proc.stderr.splitlines() if ln.startswith("error:"))
    ]
    assert "extra.pkl" in proc.stderr and "refused to unpickle" in proc.stderr
    assert not marker.exists()


# ---------------------------------------------------------------- 2. corrupt checkpoints
def _corrupt(step_dir):
    for f in step_dir.rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "METADATA" not in f.name.upper():
            f.write_bytes(b"\0garbage" * 4)


@pytest.mark.slow
def test_corrupt_newest_step_is_moved_aside_and_training_completes(tmp_path, caplog):
    c = tiny_config(epochs=2)
    jtrain.fit(c, tmp_path)
    ck = tmp_path / "checkpoints/mlp"
    step1 = snapshot(ck / "1")
    _corrupt(ck / "2")
    broken = snapshot(ck / "2")
    caplog.set_level(logging.WARNING)
    jtrain.fit(c, tmp_path)  # the same command again: resumes from 1, redoes epoch 2
    names = sorted(os.listdir(ck))
    assert names[:2] == ["1", "2"] and len(names) == 3 and names[2].startswith("2.corrupt-")
    assert snapshot(ck / names[2]) == broken  # moved, not deleted or changed
    assert snapshot(ck / "1") == step1
    warned = [r.getMessage() for r in caplog.records if "moved aside" in r.getMessage()]
    assert len(warned) == 1 and names[2] in warned[0] and str(ck / "2") in warned[0]
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(x)["epoch"] for x in lines]
    assert epochs == [1, 2]  # the redone epoch's record replaces the old one (rewind)
    # The retrained step reads back, so later runs and evaluate are not blocked.
    step, _ = _restore(c, tmp_path, read_only=True, step=2)
    assert step == 2


def _restore(c, workdir, **kw):
    data = jtrain.load_experiment_data(c)
    splits = jtrain.make_splits(c, data)
    task = jtrain.build_task(c.routers.mlp, data.num_models, c.train, splits.train[0].num_prompts)
    target = T.init_states(task, splits.seeds, data.features.shape[1])
    step = kw.pop("step", None)
    return Checkpointer(workdir / "checkpoints/mlp", **kw).restore(target, step=step)


@pytest.mark.slow
def test_read_only_restore_of_corrupt_or_missing_step_is_one_line(tmp_path):
    c = tiny_config(epochs=2)
    jtrain.fit(c, tmp_path)
    _corrupt(tmp_path / "checkpoints/mlp/2")
    before = snapshot(tmp_path)
    with pytest.raises(CheckpointError) as e:
        _restore(c, tmp_path, read_only=True, step=2)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400 and "checkpoints/mlp/2 is unreadable" in msg
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        Checkpointer(tmp_path / "checkpoints/gone", read_only=True)
    assert not (tmp_path / "checkpoints/gone").exists()  # never recreated
    assert snapshot(tmp_path) == before  # read-only: nothing moved or written


def test_disk_full_during_save_is_one_line_and_keeps_the_last_step(tmp_path, monkeypatch):
    from etils import epath

    ck = Checkpointer(tmp_path / "ck")
    ck.save(1, {"w": jnp.arange(8.0)})
    kept = snapshot(tmp_path / "ck/1")
    gpath = type(epath.Path(tmp_path))
    # Computed before the disk fills: JAX writes each new compiled program to the suite's
    # compilation cache (through the same path class), and that write would fail too.
    step2 = {"w": jnp.arange(8.0) + 1}

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(gpath, "write_text", no_space)
    monkeypatch.setattr(gpath, "write_bytes", no_space)
    with pytest.raises(CheckpointError) as e:
        ck.save(2, step2)
    monkeypatch.undo()
    assert str(e.value) == (
        f"cannot save checkpoint {tmp_path / 'ck/2'}: No space left on device [ENOSPC]"
    )
    assert snapshot(tmp_path / "ck/1") == kept
    assert Checkpointer(tmp_path / "ck").steps() == [1]  # the partial step is not listed


def test_orbax_log_lines_are_dropped_below_verbosity_1():
    from absl import logging as absl_logging

    rec = logging.LogRecord("absl", logging.ERROR, "/x/orbax/checkpoint/a.py", 1, "m", (), None)
    ours = logging.LogRecord("absl", logging.WARNING, "/x/jaxroute/a.py", 1, "m", (), None)
    old = absl_logging.get_verbosity()
    try:
        absl_logging.set_verbosity(absl_logging.INFO)
        assert not common._QUIET.filter(rec) and common._QUIET.filter(ours)
        lost = logging.LogRecord(
            "asyncio",
            logging.ERROR,
            "/x/asyncio/b.py",
            1,
            "Future exception was never retrieved",
            (),
            None,
        )
        assert not common._QUIET.filter(lost)
        absl_logging.set_verbosity(absl_logging.DEBUG)
        assert common._QUIET.filter(rec)
    finally:
        absl_logging.set_verbosity(old)


# ---------------------------------------------------------------- 3. data edited in place
def test_fingerprint_names_features_ids_and_size():
    a = jd.synthetic(n_prompts=30, seed=0, feature_dim=4)
    fa = _guard.data_fingerprint(a)
    feats = a.features.copy()
    feats[0, 0] += 1
    assert _guard.fingerprint_changes(fa, _guard.data_fingerprint(a.with_features(feats))) == [
        "features"
    ]
    ids = a.replace(sample_ids=[f"x{i}" for i in range(30)])
    assert _guard.fingerprint_changes(fa, _guard.data_fingerprint(ids)) == ["sample ids"]
    small = _guard.data_fingerprint(a.subset(np.arange(20)))
    assert _guard.fingerprint_changes(fa, small)[0] == "prompts 30 -> 20"
    assert _guard.fingerprint_changes(fa, _guard.data_fingerprint(a)) == []


def _task_edited(data, row: int):
    tasks = np.asarray(data.tasks).astype(object).copy()
    tasks[row] = tasks[row] + "_edited"
    return data.replace(tasks=tasks)


def test_fingerprint_covers_task_labels_and_not_the_row_order():
    a = jd.synthetic(n_prompts=30, seed=0, feature_dim=4)
    fa = _guard.data_fingerprint(a)
    reversed_ = _guard.data_fingerprint(a.subset(np.arange(30)[::-1]))
    assert _guard.fingerprint_changes(fa, reversed_) == []
    assert reversed_["row_order"] != fa["row_order"]
    edited = _guard.data_fingerprint(_task_edited(a, 7))
    assert _guard.fingerprint_changes(fa, edited) == ["task labels (eval_name)"]


def test_reordered_rows_are_put_back_in_the_first_runs_order(tmp_path):
    a = jd.synthetic(n_prompts=30, seed=0, feature_dim=4)
    assert _guard.check_fingerprint(tmp_path, a, record=True) is a
    rev = a.subset(np.arange(30)[::-1])
    back = _guard.check_fingerprint(tmp_path, rev, reorder=True)
    assert back.sample_ids.tolist() == a.sample_ids.tolist()
    np.testing.assert_array_equal(back.quality, a.quality)
    np.testing.assert_array_equal(back.features, a.features)
    assert back.tasks.tolist() == a.tasks.tolist()
    with pytest.raises(_guard.DataMismatch, match="in another order"):
        _guard.check_fingerprint(tmp_path, rev)  # a caller that splits the data as given
    with pytest.raises(_guard.DataMismatch, match=r"task labels \(eval_name\) changed"):
        _guard.check_fingerprint(tmp_path, _task_edited(rev, 3), reorder=True)


def test_a_fingerprint_from_before_version_2_is_still_checked(tmp_path):
    a = jd.synthetic(n_prompts=30, seed=0, feature_dim=4)
    (tmp_path / "fingerprint.json").write_text(json.dumps(_guard._legacy_fingerprint(a)))
    assert _guard.check_fingerprint(tmp_path, a) is a
    q = a.quality.copy()
    q[0, 1] = 1.0 - q[0, 1]
    with pytest.raises(_guard.DataMismatch, match=rf"quality of \['{a.models[1]}'\]"):
        _guard.check_fingerprint(tmp_path, a.replace(quality=q))


# ---------------------------------------------------------------- 4. one writer per workdir
HOLD = (
    "import fcntl, os, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
    "fcntl.flock(fd, fcntl.LOCK_EX)\n"
    "os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())\n"
    "print('held', flush=True); time.sleep(120)\n"
)


def _holder(workdir):
    workdir.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(workdir / ".lock")], stdout=subprocess.PIPE, text=True
    )
    assert p.stdout.readline().strip() == "held"
    return p


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path, caplog):
    wd = tmp_path / "w"
    holder = _holder(wd)
    holder.send_signal(signal.SIGKILL)  # kill -9: the kernel drops its flock
    holder.wait()
    assert (wd / ".lock").read_text().strip() == str(holder.pid)
    caplog.set_level(logging.WARNING)
    with _guard.workdir_lock(wd):
        assert (wd / ".lock").read_text().strip() == str(os.getpid())
        with _guard.workdir_lock(wd):  # re-entrant in one process (train, then evaluate)
            pass
        _guard.ensure_not_training(wd)  # this process's own lock does not block it
    assert f"pid {holder.pid}" in caplog.text


# ---------------------------------------------------------------- 5. header-only data
@pytest.mark.slow
def test_header_only_file_is_a_data_error_before_anything_is_written(tmp_path, good_csv):
    header = tmp_path / "header.csv"
    pd.read_csv(good_csv).head(0).to_csv(header, index=False)
    with pytest.raises(jd.DataError, match="no data rows") as e:
        jd.load_data(header)
    assert str(header) in str(e.value)
    wd = tmp_path / "w"
    with pytest.raises(jd.DataError, match="no data rows"):
        jtrain.train_and_evaluate(tiny_config(data_path=header), wd)
    assert not wd.exists()
    for module, extra in (("inspect_data", []), ("train", [f"--workdir={wd}"])):
        proc = run_app(module, f"--data_path={header}", *extra)
        assert proc.returncode == 2, (module, proc.stderr[-2000:])  # the same code in both
        assert error_lines(proc.stderr) == [f"error: {e.value}"]
    assert not wd.exists()


# ---------------------------------------------------------------- 7. suspicious, not wrong
def test_constant_model_columns_warn_but_load(tmp_path, good_csv, caplog):
    df = pd.read_csv(good_csv)
    models = jd.synthetic(n_prompts=12, seed=0).models
    df[models[0]] = 1.0
    df[models[1] + "|total_cost"] = 0.0
    df.to_csv(good_csv, index=False)
    caplog.set_level(logging.WARNING)
    data = jd.load_data(good_csv)
    assert data.num_prompts == 12
    assert f"model '{models[0]}': quality is 1.0 on all 12 prompts" in caplog.text
    assert f"model '{models[1]}': cost is 0 on all 12 prompts" in caplog.text


def test_features_without_ids_warn(tmp_path, caplog):
    d = jd.synthetic(n_prompts=10, seed=0, feature_dim=4)
    np.save(tmp_path / "f.npy", d.features)
    caplog.set_level(logging.WARNING)
    np.testing.assert_array_equal(load_features(tmp_path / "f.npy", d.sample_ids), d.features)
    assert "no f.ids beside it" in caplog.text


@pytest.mark.slow
def test_diagnose_with_an_all_zero_feature_row_prints_valid_json(tmp_path):
    d = jd.synthetic(n_prompts=60, seed=0, feature_dim=4)
    feats = d.features.copy()
    feats[7] = 0.0
    np.save(tmp_path / "f.npy", feats)
    (tmp_path / "f.ids").write_text("\n".join(d.sample_ids) + "\n")
    proc = run_app(
        "diagnose",
        "--data_path=synthetic:n_prompts=60,seed=0,feature_dim=4",
        f"--features={tmp_path / 'f.npy'}",
        "--json",
        "--noise_scales=0",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    def no_nan(x):
        raise AssertionError(f"{x} in JSON output")

    out = json.loads(proc.stdout.strip().splitlines()[-1], parse_constant=no_nan)
    task = d.tasks[7]
    assert 0 < out["tasks"][task]["mean_within_task_cosine"] < 1
    assert f"sample id '{d.sample_ids[7]}', row 7" in proc.stderr


def test_json_output_replaces_nan_with_null_and_warns(capsys, caplog):
    caplog.set_level(logging.WARNING)
    common.print_json({"a": [1.0, float("nan")], "b": {"c": float("inf")}})
    assert json.loads(capsys.readouterr().out) == {"a": [1.0, None], "b": {"c": None}}
    assert "$.a[1] is nan" in caplog.text and "$.b.c is inf" in caplog.text


# ---------------------------------------------------------------- 8. messages with rows
def test_non_utf8_and_nan_cells_name_the_row(tmp_path, good_csv):
    df = pd.read_csv(good_csv)
    model = jd.synthetic(n_prompts=12, seed=0).models[2]
    sid, prompt = df.sample_id[3], df.prompt[3]
    raw = good_csv.read_bytes().replace(prompt.encode(), prompt.encode() + b"\xff", 1)
    (tmp_path / "latin.csv").write_bytes(raw)
    with pytest.raises(jd.DataError) as e:
        jd.load_data(tmp_path / "latin.csv")
    assert f"row 3, sample id '{sid}', column 'prompt'" in str(e.value)
    assert "byte 0xff is not UTF-8" in str(e.value)
    df.loc[4, model] = np.nan
    df.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(jd.DataError) as e:
        jd.load_data(tmp_path / "nan.csv")
    assert f"sample id '{df.sample_id[4]}' (row 4)" in str(e.value)
    assert "NaN" in str(e.value) and model in str(e.value)
    df = pd.read_csv(good_csv)
    df.loc[6, model + "|total_cost"] = np.nan
    df.to_csv(tmp_path / "nancost.csv", index=False)
    with pytest.raises(jd.DataError, match=r"\(row 6\): cost is empty \(NaN\)"):
        jd.load_data(tmp_path / "nancost.csv")


def test_exit_codes_one_table():
    assert common.exit_code(jd.DataError("x")) == 2
    assert common.exit_code(_guard.WorkdirBusy("x")) == 2
    assert common.exit_code(_guard.DataMismatch("x")) == 2
    assert common.exit_code(ValueError("x")) == 2
    assert common.exit_code(FileNotFoundError("x")) == 2
    assert common.exit_code(CheckpointError("x")) == 1
    assert common.exit_code(OSError(errno.ENOSPC, "full")) == 1
    assert common.exit_code(FloatingPointError("nan")) == 1
    assert common.exit_code(KeyError("bug")) is None  # a bug: absl shows the traceback
