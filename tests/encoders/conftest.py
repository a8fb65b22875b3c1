"""Fixtures: a tiny randomly initialised encoder folder (real tokenizer, small config)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from jaxroute import encoders
from jaxroute.encoders import _config

TINY_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "hidden_act": "gelu",
}


def random_tensors(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named BertModel tensors with random values for ``config``."""
    cfg = _config.BertConfig.from_dict(config)
    rng = np.random.default_rng(seed)
    d, f = cfg.hidden_size, cfg.intermediate_size
    t = {
        "embeddings.word_embeddings.weight": (cfg.vocab_size, d),
        "embeddings.position_embeddings.weight": (cfg.max_position_embeddings, d),
        "embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, d),
    }
    for i in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for n in ("attention.self.query", "attention.self.key", "attention.self.value"):
            t[p + n + ".weight"], t[p + n + ".bias"] = (d, d), (d,)
        t[p + "attention.output.dense.weight"], t[p + "attention.output.dense.bias"] = (d, d), (d,)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = (f, d), (f,)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = (d, f), (d,)
    tensors = {k: (0.2 * rng.standard_normal(s)).astype(np.float32) for k, s in t.items()}
    ln = ["embeddings.LayerNorm"] + [
        f"encoder.layer.{i}.{n}.LayerNorm"
        for i in range(cfg.num_hidden_layers)
        for n in ("attention.output", "output")
    ]
    for n in ln:
        tensors[n + ".weight"] = np.ones(d, np.float32)
        tensors[n + ".bias"] = np.zeros(d, np.float32)
    return tensors


def make_tiny_folder(path: Path, seed: int = 0, max_seq_length: int = 64) -> Path:
    """Writes a tiny encoder folder: config.json, random model.safetensors, real tokenizer."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(TINY_CONFIG))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    save_file(random_tensors(TINY_CONFIG, seed), str(path / "model.safetensors"))
    shutil.copy(encoders.default_encoder_dir() / "tokenizer.json", path / "tokenizer.json")
    return path


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny encoder folder shared by the session (do not modify it)."""
    return make_tiny_folder(tmp_path_factory.mktemp("tiny_encoder"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_dir):
    """The tiny encoder, loaded once, with buckets 8/16/32/64."""
    return encoders.load_encoder(tiny_dir, buckets=(8, 16, 32))
