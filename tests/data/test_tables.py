"""The reader and split tables: lookup by name, a new reader in one line, the predefined
split, and the experiment's splits (out-of-domain, validation part) built from them."""

import ast
import pathlib

import numpy as np
import pytest

from jaxroute import data as jd
from jaxroute.configs.base import get_config
from jaxroute.data import DataError
from jaxroute.train import make_splits


@pytest.fixture(scope="module")
def small():
    return jd.synthetic(n_prompts=60, seed=3)


def test_formats_are_the_reader_table():
    assert jd.FORMATS == ("auto", "wide", "long", "generic", "synthetic", "tfds")
    with pytest.raises(DataError, match="tfds"):
        jd.load_data("x", data_format="xml")


def test_a_new_reader_is_one_table_line(small, monkeypatch):
    calls = []

    def read_mine(path, *, drop_incomplete=False):
        calls.append((path, drop_incomplete))
        return small

    monkeypatch.setitem(jd.READERS, "mine", jd.ReaderSpec(read_mine, prefix="mine"))
    got = jd.load_data("mine:abc", drop_incomplete=True)  # found by its prefix
    assert got is small and calls == [("mine:abc", True)]


def test_tfds_reader_has_no_import_cycle():
    """The TFDS module imports the file readers, never the dispatcher; the dispatcher
    names it in its table line only."""
    root = pathlib.Path(jd.__file__).parent
    for module, banned in (("tfds_routerbench", "_load"), ("_readers", "tfds_routerbench")):
        tree = ast.parse((root / f"{module}.py").read_text())
        imported = {
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
        } | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m.endswith(banned) for m in imported), (module, imported)


def _predefined_folder(small, tmp_path, train_rows):
    folder = tmp_path / "rb"
    folder.mkdir()
    test_rows = np.setdiff1d(np.arange(len(small)), train_rows)
    jd.to_wide_frame(small.subset(train_rows)).to_csv(folder / "rb_train.csv")
    jd.to_wide_frame(small.subset(test_rows)).to_csv(folder / "rb_test.csv")
    return folder, test_rows


def test_predefined_split_keeps_the_files(small, tmp_path):
    train_rows = np.arange(0, 60, 3)
    folder, test_rows = _predefined_folder(small, tmp_path, train_rows)
    c = get_config("tiny")
    c.data.path, c.data.split, c.features.source = str(folder), "predefined", "data"
    c.seeds = (0, 1)
    data = jd.load_data(folder)
    splits = make_splits(c, data)
    for tr, te in zip(splits.train, splits.test, strict=True):
        assert sorted(tr.sample_ids) == sorted(small.sample_ids[train_rows])
        assert sorted(te.sample_ids) == sorted(small.sample_ids[test_rows])
    (folder / "extra.csv").write_text((folder / "rb_test.csv").read_text())
    with pytest.raises(DataError, match="extra.csv"):
        jd.split_predefined(data, str(folder))
    with pytest.raises(DataError, match="folder"):
        jd.split_predefined(data, "synthetic")


def test_experiment_out_of_domain_and_validation_splits(small):
    c = get_config("tiny")
    c.seeds = (0, 1)
    task = small.task_names[1]
    c.data.split, c.data.test_tasks = "out_of_domain", task
    c.train.val_fraction = 0.25
    splits = make_splits(c, small)
    n_test = int((small.tasks == task).sum())
    n_train = len(small) - n_test
    n_val = n_train - int(round(0.75 * n_train))
    for tr, va, te in zip(splits.train, splits.val, splits.test, strict=True):
        assert set(te.tasks) == {task} and len(te) == n_test
        assert task not in set(tr.tasks) and task not in set(va.tasks)
        assert len(va) == n_val and len(tr) == n_train - n_val
        assert not set(tr.sample_ids) & set(va.sample_ids)
    # The test part is the same for every seed; the validation part is seeded.
    assert splits.test[0].sample_ids.tolist() == splits.test[1].sample_ids.tolist()
    assert splits.val[0].sample_ids.tolist() != splits.val[1].sample_ids.tolist()
    c.data.split = "by_magic"
    with pytest.raises(ValueError, match="predefined"):
        make_splits(c, small)
