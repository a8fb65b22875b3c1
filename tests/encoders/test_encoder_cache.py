"""Feature cache (hit, miss, invalidation, atomicity), load_features, features_for."""

import dataclasses
import json

import numpy as np
import pytest

from jaxroute import _io, encoders
from jaxroute.encoders import _cache

from .conftest import make_tiny_folder


@dataclasses.dataclass
class _Data:
    sample_ids: list
    prompts: list | None


@pytest.fixture
def count_encodes(monkeypatch, tiny_encoder):
    """Counts the prompts the encoder actually encodes (cache misses)."""
    seen = []
    monkeypatch.setattr(_cache, "_get_encoder", lambda d, dtype: _Counting(tiny_encoder, seen))
    return seen


class _Counting:
    def __init__(self, enc, seen):
        self.enc, self.seen, self.dim = enc, seen, enc.dim

    def __call__(self, prompts, **kw):
        self.seen.extend(prompts)
        return self.enc(prompts, **kw)


def _embed(prompts, tiny_dir, cache_dir, **kw):
    kw.setdefault("progress", False)
    return encoders.embed_prompts(prompts, encoder_dir=tiny_dir, cache_dir=cache_dir, **kw)


def test_hit_miss_and_changed_prompt(tmp_path, tiny_dir, tiny_encoder, count_encodes):
    prompts = ["first prompt", "second", "first prompt", "third one here"]
    a = _embed(prompts, tiny_dir, tmp_path)
    assert count_encodes == ["first prompt", "second", "third one here"]  # dupes once
    np.testing.assert_allclose(a, tiny_encoder(prompts, progress=False), atol=1e-6)
    count_encodes.clear()
    b = _embed(prompts[::-1], tiny_dir, tmp_path)
    assert count_encodes == []  # all from disk
    np.testing.assert_array_equal(b, a[::-1])
    c = _embed(["second", "second, changed"], tiny_dir, tmp_path)
    assert count_encodes == ["second, changed"]
    np.testing.assert_array_equal(c[0], a[1])
    assert not np.allclose(c[1], a[1])
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.slow
def test_changed_encoder_never_served_stale(tmp_path, tiny_dir):
    prompts = ["what is two plus two?", "hello"]
    a = _embed(prompts, tiny_dir, tmp_path / "cache")
    other = make_tiny_folder(tmp_path / "other_weights", seed=3)
    b = _embed(prompts, other, tmp_path / "cache")
    expected = _cache._get_encoder(other)(prompts, progress=False)
    np.testing.assert_allclose(b, expected, atol=1e-6)
    assert not np.allclose(a, b)
    shorter = make_tiny_folder(tmp_path / "shorter", seed=0, max_seq_length=32)
    assert encoders.encoder_identity(shorter)[1] == 32
    assert len(list((tmp_path / "cache").iterdir())) == 2
    _embed(prompts, shorter, tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 3  # own folder per max_length


def test_corrupt_cache_is_recomputed(tmp_path, tiny_dir, count_encodes):
    prompts = ["alpha", "beta"]
    a = _embed(prompts, tiny_dir, tmp_path)
    (folder,) = tmp_path.iterdir()
    for shard in folder.glob("shard-*.npy"):
        shard.write_bytes(b"truncated")
    count_encodes.clear()
    np.testing.assert_allclose(_embed(prompts, tiny_dir, tmp_path), a, atol=1e-6)
    assert count_encodes == prompts
    (folder / "manifest.json").write_text("{")
    count_encodes.clear()
    np.testing.assert_allclose(_embed(prompts, tiny_dir, tmp_path), a, atol=1e-6)
    assert count_encodes == prompts
    assert json.loads((folder / "manifest.json").read_text())["dim"] == 16


def test_interrupted_write_leaves_cache_valid(tmp_path, tiny_dir, monkeypatch):
    prompts = ["alpha", "beta"]
    a = _embed(prompts, tiny_dir, tmp_path, dtype="float32")

    def boom(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    cache = encoders.FeatureCache(tmp_path, *encoders.encoder_identity(tiny_dir))
    with pytest.raises(KeyboardInterrupt):
        _io.atomic_write(cache.manifest_path, boom)
    assert not list(tmp_path.rglob("*.tmp"))
    got, missing = cache.get(prompts)
    assert missing == []
    np.testing.assert_array_equal(got, a)


def test_no_cache_dir(tmp_path, tiny_dir, tiny_encoder):
    out = _embed(["a b c"], tiny_dir, None)
    np.testing.assert_allclose(out, tiny_encoder(["a b c"], progress=False), atol=1e-6)


def test_write_and_load_features_roundtrip_and_reorder(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    path = tmp_path / "clip.npy"
    encoders.write_features(path, x, ["a", "b", "c", "d"])
    assert (tmp_path / "clip.ids").read_text() == "a\nb\nc\nd\n"
    got = encoders.load_features(path, sample_ids=["c", "a", "d", "b"])
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x[[2, 0, 3, 1]])
    np.testing.assert_array_equal(encoders.load_features(path, n_rows=4), x)


def test_load_features_errors_name_the_file(tmp_path):
    path = tmp_path / "f.npy"
    with pytest.raises(FileNotFoundError, match="f.npy does not exist"):
        encoders.load_features(path)
    np.save(path, np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"f\.npy: has 3 rows, the data has 4"):
        encoders.load_features(path, n_rows=4)
    with pytest.raises(ValueError, match=r"f\.npy: has 3 rows, the data has 2"):
        encoders.load_features(path, sample_ids=["a", "b"])
    (tmp_path / "f.ids").write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"f\.ids: 2 ids for 3 rows"):
        encoders.load_features(path, sample_ids=["a", "b", "c"])
    (tmp_path / "f.ids").write_text("a\nb\nb\n")
    with pytest.raises(ValueError, match=r"f\.ids: duplicate sample id 'b'"):
        encoders.load_features(path, sample_ids=["a", "b", "c"])
    (tmp_path / "f.ids").write_text("a\nb\nx\n")
    with pytest.raises(ValueError, match=r"f\.ids: 1 sample id\(s\) of the data .*'c'"):
        encoders.load_features(path, sample_ids=["a", "b", "c"])
    np.save(path, np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"f\.npy: expected a numeric \[N, D\]"):
        encoders.load_features(path)
    np.save(path, np.array([[0.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match=r"f\.npy: 1 row\(s\) have non-finite"):
        encoders.load_features(path)
    path.write_bytes(b"not npy")
    with pytest.raises(ValueError, match=r"f\.npy: not a readable"):
        encoders.load_features(path)


def test_features_for(tmp_path, tiny_dir, tiny_encoder):
    data = _Data(sample_ids=["s1", "s2"], prompts=["one", "two"])
    got = encoders.features_for(data, encoder_dir=tiny_dir, cache_dir=tmp_path, progress=False)
    np.testing.assert_allclose(got, tiny_encoder(["one", "two"], progress=False), atol=1e-6)
    path = tmp_path / "pre.npy"
    encoders.write_features(path, np.eye(2, 7)[::-1], ["s2", "s1"])
    np.testing.assert_array_equal(
        encoders.features_for(_Data(["s1", "s2"], None), features_path=path), np.eye(2, 7)
    )
    with pytest.raises(ValueError, match="no prompts"):
        encoders.features_for(_Data(["s1"], None))
    with pytest.raises(ValueError, match=r"sample id 's2'"):
        encoders.features_for(_Data(["s1", "s2"], ["ok", " "]), encoder_dir=tiny_dir)


def test_dtypes_have_separate_cache_identities(tmp_path, tiny_dir):
    prompts = ["first prompt", "second"]
    a = _embed(prompts, tiny_dir, tmp_path, dtype="float32")
    b = _embed(prompts, tiny_dir, tmp_path, dtype="bfloat16")
    assert not np.array_equal(a, b)  # the bfloat16 run did not read the float32 rows
    folders = sorted(p.name for p in tmp_path.iterdir())
    fp = encoders.encoder_fingerprint(tiny_dir)
    assert folders == [f"{fp}-L64", f"{fp}-bf16-L64"]
    np.testing.assert_array_equal(_embed(prompts, tiny_dir, tmp_path, dtype="float32"), a)
    np.testing.assert_array_equal(_embed(prompts, tiny_dir, tmp_path, dtype="bfloat16"), b)
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        encoders.FeatureCache(tmp_path, fp, 64, "auto")
