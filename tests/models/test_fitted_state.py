"""Fitted states as inert files: the flat-array round trip and its refusals."""

import json

import numpy as np
import pytest

from jaxroute.models import RouterSpec, fitted


def _spec(**kw):
    return RouterSpec(fit=lambda t, rc: None, predict=lambda s, x, rc: None, **kw)


TREE = {
    "w": np.arange(6, dtype=np.float32).reshape(2, 3),
    "names": ("a", "b"),
    "nested": {"k": np.int64(7), "none": None, "flag": True, "t": 0.1 + 0.2},
    "list": [1, np.array([0.5], np.float64)],
    "labels": np.array(["x", "yz"]),
}


def test_flatten_keeps_arrays_apart_and_unflatten_inverts_it_exactly():
    arrays, meta = fitted.flatten(TREE)
    assert sorted(arrays) == ["labels", "list/1", "nested/k", "w"]
    json.dumps(meta)  # the rest is JSON
    back = fitted.unflatten(arrays, json.loads(json.dumps(meta)))
    assert back["names"] == ("a", "b") and back["nested"]["t"] == 0.1 + 0.2
    assert back["nested"]["none"] is None and back["nested"]["flag"] is True
    assert type(back["nested"]["k"]) is np.int64 and back["nested"]["k"] == 7
    np.testing.assert_array_equal(back["w"], TREE["w"])
    assert back["w"].dtype == np.float32 and back["labels"].dtype.kind == "U"
    assert back["list"][0] == 1 and back["list"][1].dtype == np.float64


@pytest.mark.parametrize(
    ("tree", "match"),
    [
        ({1: np.zeros(1)}, "state key 1"),
        ({"a/b": np.zeros(1)}, "state key 'a/b'"),
        ({"f": object()}, "state entry f: object"),
        ({"o": np.array([{}], dtype=object)}, "state entry o: an array of Python objects"),
    ],
)
def test_flatten_refuses_what_would_not_round_trip(tree, match):
    with pytest.raises(TypeError, match=match):
        fitted.flatten(tree)


def test_saved_state_loads_without_pickle_and_refuses_other_settings(tmp_path):
    spec = _spec(fields={"k": 3})
    rc = {"model": "mean", "k": 3, "unrelated": "x"}
    size = fitted.save_state(tmp_path, "r", 5, spec, TREE, rc, n_train=9)
    npz, js = fitted.state_paths(tmp_path, "r", 5)
    assert npz == tmp_path / "fitted" / "r" / "seed_5.npz" and js.suffix == ".json"
    assert size == sum(a.nbytes for a in fitted.flatten(TREE)[0].values())
    record = json.loads(js.read_text())
    assert record["config"] == {"model": "mean", "k": 3} and record["n_train"] == 9
    state, _ = fitted.load_state(tmp_path, "r", 5, spec, {**rc, "unrelated": "y"})
    np.testing.assert_array_equal(state["w"], TREE["w"])
    with pytest.raises(fitted.StaleState, match="seed_5.json: field 'config' does not match"):
        fitted.load_state(tmp_path, "r", 5, spec, {**rc, "k": 4})
    with pytest.raises(FileNotFoundError, match="no fitted state of router 'r' for seed 6"):
        fitted.load_state(tmp_path, "r", 6, spec, rc)
    npz.write_bytes(b"not a zip")
    with pytest.raises(fitted.StaleState, match="seed_5.npz: unreadable"):
        fitted.load_state(tmp_path, "r", 5, spec, rc)
    js.write_text("{")
    with pytest.raises(fitted.StaleState, match="seed_5.json: not JSON"):
        fitted.load_state(tmp_path, "r", 5, spec, rc)
