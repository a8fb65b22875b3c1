"""RoutingData validation, readers, merge, splits and the synthetic generator."""

import numpy as np
import pandas as pd
import pytest

from jaxroute import data as jd
from jaxroute.data import DataError


@pytest.fixture(scope="module")
def small():
    return jd.synthetic(n_prompts=60, seed=3)


# ---------------------------------------------------------------- RoutingData
def _rd(**kw):
    base = dict(
        quality=[[1.0, 0.0], [0.5, 1.0]],
        cost=[[1e-3, 1e-4], [1e-3, 1e-4]],
        models=["a", "b"],
        tasks=["t", "t"],
        sample_ids=["s0", "s1"],
    )
    base.update(kw)
    return jd.RoutingData(**base)


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(quality=[[1.0, np.nan], [0.5, 1.0]]), ["quality", "s0", "'b'", "not finite"]),
        (dict(quality=[[1.0, 0.0], [1.5, 1.0]]), ["quality", "s1", "'a'", "[0, 1]"]),
        (dict(cost=[[1e-3, 1e-4], [1e-3, np.inf]]), ["cost", "s1", "'b'", "not finite"]),
        (dict(cost=[[-1e-3, 1e-4], [1e-3, 1e-4]]), ["cost", "s0", "'a'", "negative"]),
        (dict(sample_ids=["s0", "s0"]), ["sample_ids", "duplicate", "s0"]),
        (dict(quality=[[1.0], [0.0]], cost=[[1.0], [1.0]], models=["a"]), ["at least 2"]),
        (dict(cost=[[1e-3, 1e-4]]), ["cost", "shape"]),
        (dict(tasks=["t"]), ["tasks", "shape"]),
        (dict(features=np.ones((3, 4))), ["features", "rows"]),
        (dict(models=["a", "a"]), ["models", "duplicate"]),
    ],
)
def test_validation_names_field_row_model(kw, words):
    with pytest.raises(DataError) as e:
        _rd(**kw)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_subset_select_concat(small):
    sub = small.subset([3, 1])
    np.testing.assert_array_equal(sub.quality, small.quality[[3, 1]])
    assert sub.sample_ids.tolist() == small.sample_ids[[3, 1]].tolist()
    sel = small.select_models([small.models[5], small.models[0]])
    np.testing.assert_array_equal(sel.cost[:, 0], small.cost[:, 5])
    a, b = small.subset(np.arange(10)), small.subset(np.arange(10, 20))
    both = jd.concat([a, b])
    np.testing.assert_array_equal(both.quality, small.quality[:20])
    with pytest.raises(DataError, match="duplicate"):
        jd.concat([a, a])
    with pytest.raises(DataError, match="unknown models"):
        small.select_models(["nope"])
    task = small.tasks[0]
    assert set(small.select_tasks([task]).tasks) == {task}


# ---------------------------------------------------------------- readers
def _write(df, path):
    if path.suffix == ".csv":
        df.to_csv(path)
    elif path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_pickle(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".pkl", ".parquet"])
def test_wide_roundtrip(small, tmp_path, suffix):
    path = _write(jd.to_wide_frame(small), tmp_path / f"bench{suffix}")
    got = jd.load_data(path)
    assert got.models == small.models
    np.testing.assert_allclose(got.quality, small.quality)
    np.testing.assert_allclose(got.cost, small.cost, rtol=1e-6)
    assert got.sample_ids.tolist() == small.sample_ids.tolist()
    assert got.tasks.tolist() == small.tasks.tolist()


def test_wide_folder_concatenates(small, tmp_path):
    df = jd.to_wide_frame(small)
    _write(df.iloc[:25], tmp_path / "a_test.csv")
    _write(df.iloc[25:], tmp_path / "b_train.csv")
    got = jd.load_data(tmp_path)
    assert got.num_prompts == small.num_prompts
    assert sorted(got.sample_ids) == sorted(small.sample_ids)


def _split_rows(small):
    """Sample 0 split as in the RouterBench subset: one model in a row of its own."""
    df = jd.to_wide_frame(small)
    m0 = small.models[0]
    extra = df.iloc[[0]].copy()
    for m in small.models[1:]:
        extra[m] = np.nan
    extra[m0 + "|total_cost"] = 0.5  # its own (longer prompt) cost
    extra["prompt"] = "a longer prompt"
    df.loc[0, m0] = np.nan
    df.loc[0, m0 + "|total_cost"] = 0.25  # cost without quality: must be ignored
    return pd.concat([df, extra], ignore_index=True), m0


def test_merge_by_sample_id(small, tmp_path):
    df, m0 = _split_rows(small)
    got = jd.load_data(_write(df, tmp_path / "x.csv"))
    assert got.num_prompts == small.num_prompts
    i = got.sample_ids.tolist().index(small.sample_ids[0])
    j = got.models.index(m0)
    assert got.cost[i, j] == pytest.approx(0.5)  # from the row holding its quality
    assert got.quality[i, j] == small.quality[0, 0]
    assert got.prompts[i] == small.prompts[0]  # from the row holding most models
    np.testing.assert_allclose(got.cost[i, 1:], small.cost[0, 1:], rtol=1e-6)


def test_merge_conflict_and_incomplete(small, tmp_path):
    df, m0 = _split_rows(small)
    bad = df.copy()
    bad.loc[0, m0] = 1.0 - small.quality[0, 0]
    bad.loc[0, m0 + "|total_cost"] = 0.1
    with pytest.raises(DataError) as e:
        jd.load_data(_write(bad, tmp_path / "conflict.csv"))
    assert m0 in str(e.value) and small.sample_ids[0] in str(e.value)
    inc = df.iloc[:-1]  # drop the row holding m0's quality
    with pytest.raises(DataError) as e:
        jd.load_data(_write(inc, tmp_path / "inc.csv"))
    assert m0 in str(e.value) and small.sample_ids[0] in str(e.value)
    got = jd.load_data(tmp_path / "inc.csv", drop_incomplete=True)
    assert got.num_prompts == small.num_prompts - 1


@pytest.mark.parametrize("corruption", ["nan_cost", "no_column", "text", "conflict_dup"])
def test_corrupt_wide_names_column_and_id(small, tmp_path, corruption):
    df = jd.to_wide_frame(small)
    m = small.models[4]
    sid = small.sample_ids[7]
    if corruption == "nan_cost":
        df.loc[7, m + "|total_cost"] = np.nan
        column = m + "|total_cost"
    elif corruption == "no_column":
        df = df.drop(columns=[m])
        column, sid = m, ""
    elif corruption == "text":
        df[m] = df[m].astype(object)
        df.loc[7, m] = "n/a"
        column = m
    else:
        row = df.iloc[[7]].copy()
        row[m] = 1.0 - row[m]
        df = pd.concat([df, row], ignore_index=True)
        column = m
    with pytest.raises(DataError) as e:
        jd.load_data(_write(df, tmp_path / "bad.csv"))
    msg = str(e.value)
    assert "bad.csv" in msg and column in msg and sid in msg, msg


def test_long_form(small, tmp_path):
    got = jd.load_data(_write(jd.to_long_frame(small), tmp_path / "raw.csv"))
    assert got.models == small.models
    np.testing.assert_allclose(got.quality, small.quality)
    long = jd.to_long_frame(small).iloc[1:]  # first sample loses a model
    with pytest.raises(DataError, match=small.sample_ids[0]):
        jd.load_data(_write(long, tmp_path / "raw2.csv"), data_format="long")


def test_generic_roundtrip(small, tmp_path):
    folder = jd.write_generic(small, tmp_path / "g")
    got = jd.load_data(folder)
    np.testing.assert_array_equal(got.quality, small.quality)
    np.testing.assert_array_equal(got.features, small.features)
    assert got.prompts.tolist() == small.prompts.tolist()
    np.savez(tmp_path / "g.npz", quality=small.quality, cost=small.cost, models=small.models)
    assert jd.load_data(tmp_path / "g.npz").num_models == small.num_models
    (folder / "models.txt").unlink()
    with pytest.raises(DataError, match="models"):
        jd.load_data(folder)


def test_bad_paths_and_formats(tmp_path):
    with pytest.raises(DataError, match="no such"):
        jd.load_data(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="unknown data format"):
        jd.load_data(tmp_path, data_format="xml")
    with pytest.raises(DataError, match="bad item"):
        jd.load_data("synthetic:n_promts=5")


# ---------------------------------------------------------------- splits
def test_in_domain_split_disjoint_covering_deterministic(small):
    tr, te = jd.split_in_domain(small, 0.2, seed=42)
    assert len(tr) == 12 and len(te) == 48
    assert not set(tr.sample_ids) & set(te.sample_ids)
    assert set(tr.sample_ids) | set(te.sample_ids) == set(small.sample_ids)
    tr2, _ = jd.split_in_domain(small, 0.2, seed=42)
    assert tr.sample_ids.tolist() == tr2.sample_ids.tolist()
    tr3, _ = jd.split_in_domain(small, 0.2, seed=43)
    assert tr.sample_ids.tolist() != tr3.sample_ids.tolist()
    assert len(jd.split_seeds(small, [42, 43, 44])) == 3


def test_out_of_domain_split(small):
    task = small.task_names[0]
    tr, te = jd.split_out_of_domain(small, [task])
    assert set(te.tasks) == {task} and task not in set(tr.tasks)
    assert len(tr) + len(te) == len(small)
    with pytest.raises(DataError):
        jd.split_out_of_domain(small, small.task_names)


# ---------------------------------------------------------------- synthetic
def test_synthetic_calibration():
    d = jd.synthetic(n_prompts=3000, seed=0)
    q, c = d.quality, d.cost
    strong = d.models.index(jd.STRONG_MODEL)
    assert q.mean(0).argmax() == strong, "GPT-4 best on average"
    assert c.mean(0).argmax() == strong, "GPT-4 dearest"
    s = np.sort(q, axis=1)
    tie = (s[:, -1] == s[:, -2]).mean()
    assert 0.85 <= tie <= 0.95, tie
    assert np.isin(q, [0.0, 1.0]).mean() > 0.7  # mostly 0/1
    for name, price, _ in jd.ROUTERBENCH_MODELS:
        assert c[:, d.models.index(name)].mean() == pytest.approx(price, rel=0.1)
    assert len(d.task_names) >= 5
    # Task strengths differ: the best non-GPT-4 model is not the same in every task.
    best = {t: np.delete(q[d.tasks == t].mean(0), strong).argmax() for t in d.task_names}
    assert len(set(best.values())) > 1


def test_synthetic_deterministic_and_learnable():
    a, b = jd.synthetic(n_prompts=500, seed=7), jd.synthetic(n_prompts=500, seed=7)
    np.testing.assert_array_equal(a.quality, b.quality)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.quality, jd.synthetic(n_prompts=500, seed=8).quality)
    # Task is learnable from features: nearest task centroid beats chance by far.
    f, t = a.features, a.tasks
    cent = np.stack([f[t == k].mean(0) for k in a.task_names])
    pred = np.array(a.task_names)[np.argmax(f @ cent.T, axis=1)]
    assert (pred == t).mean() > 0.8


def test_tfds_synthetic_roundtrip(tmp_path):
    from jaxroute.data import tfds_routerbench

    tfds_routerbench.prepare("synthetic", str(tmp_path), synthetic_prompts=40)
    got = jd.load_data(f"tfds:routerbench/synthetic@{tmp_path}")
    want = jd.synthetic(n_prompts=40, seed=0)
    assert got.models == want.models
    assert got.sample_ids.tolist() == want.sample_ids.tolist()
    np.testing.assert_array_equal(got.quality, want.quality)
    np.testing.assert_allclose(got.features, want.features)
    with pytest.raises(DataError, match="not prepared"):
        jd.load_data(f"tfds:routerbench/5shot@{tmp_path / 'none'}")


def test_tfds_manual_dir_reads_wide_files(small, tmp_path):
    from jaxroute.data import tfds_routerbench

    manual = tmp_path / "manual"
    manual.mkdir()
    jd.to_wide_frame(small).to_pickle(manual / "routerbench_5shot.pkl")
    tfds_routerbench.prepare("5shot", str(tmp_path / "tfds"), manual_dir=str(manual))
    got = jd.load_data(f"tfds:routerbench/5shot@{tmp_path / 'tfds'}")
    np.testing.assert_array_equal(got.quality, small.quality)
    assert got.features is None
