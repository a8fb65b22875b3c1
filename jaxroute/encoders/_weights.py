"""Hugging Face tensors (model.safetensors) to :class:`SentenceEncoder` params.

Each architecture names its tensors in :data:`TENSOR_NAMES`; the Flax tree is the same
for all (``layers/qkv`` fused, kernels ``[in, out]``, stacked on the scan axis ``[L]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxroute.encoders._config import BertConfig


@dataclasses.dataclass(frozen=True)
class TensorNames:
    """Where one architecture keeps each tensor (names under ``encoder.layer.<i>.``).

    Attributes:
      qkv: the query, key and value projections (fused into ``qkv``).
      dense: Flax Dense name -> the Hugging Face Linear.
      norms: Flax LayerNorm name -> the Hugging Face LayerNorm.
      relative_attention_bias: the shared relative-position table, or None.
    """

    qkv: tuple[str, str, str]
    dense: dict[str, str]
    norms: dict[str, str]
    relative_attention_bias: str | None = None


_FEED_FORWARD = {"intermediate": "intermediate.dense", "output": "output.dense"}
# model_type -> tensor names (one entry per entry of _config.ARCHITECTURES).
_BERT = TensorNames(
    qkv=("attention.self.query", "attention.self.key", "attention.self.value"),
    dense={"attention_output": "attention.output.dense", **_FEED_FORWARD},
    norms={
        "attention_layer_norm": "attention.output.LayerNorm",
        "output_layer_norm": "output.LayerNorm",
    },
)
TENSOR_NAMES = {
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "mpnet": TensorNames(
        qkv=("attention.attn.q", "attention.attn.k", "attention.attn.v"),
        dense={"attention_output": "attention.attn.o", **_FEED_FORWARD},
        norms={
            "attention_layer_norm": "attention.LayerNorm",
            "output_layer_norm": "output.LayerNorm",
        },
        relative_attention_bias="encoder.relative_attention_bias.weight",
    ),
}


def _embedding_rows(cfg: BertConfig) -> dict[str, int]:
    rows = {
        "word": cfg.vocab_size,
        "position": cfg.max_position_embeddings,
        "token_type": cfg.type_vocab_size,
    }
    return {k: n for k, n in rows.items() if n}


def _hf_names(cfg: BertConfig) -> list[str]:
    """Every Hugging Face tensor name the encoder reads."""
    names_of = TENSOR_NAMES[cfg.model_type]
    names = [f"embeddings.{n}_embeddings.weight" for n in _embedding_rows(cfg)]
    names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(cfg.num_hidden_layers):
        for h in names_of.qkv + tuple(names_of.dense.values()) + tuple(names_of.norms.values()):
            names += [f"encoder.layer.{i}.{h}.weight", f"encoder.layer.{i}.{h}.bias"]
    if names_of.relative_attention_bias:
        names.append(names_of.relative_attention_bias)
    return names


def params_from_tensors(
    tensors: dict[str, np.ndarray], cfg: BertConfig, source: str = "tensors"
) -> dict[str, Any]:
    """Converts Hugging Face ``BertModel`` / ``MPNetModel`` tensors to params.

    Args:
      tensors: name -> array, as ``safetensors.numpy.load_file`` returns them; a
        leading ``bert.`` (``mpnet.``) prefix is accepted, extra tensors (pooler,
        position_ids) are ignored.
      cfg: the architecture the tensors must match.
      source: a name for error messages (the file).

    Returns:
      ``{"params": ...}``, float32 arrays, ready for ``SentenceEncoder(cfg).apply``.

    Raises:
      ValueError: naming the missing tensors, or a tensor of the wrong shape.
    """
    prefix = cfg.architecture.prefix
    names_of = TENSOR_NAMES[cfg.model_type]
    tensors = {k.removeprefix(prefix): v for k, v in tensors.items()}
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

    qkv = names_of.qkv
    layers: dict[str, Any] = {
        "qkv": {  # torch Linear weights are [out, in]; Flax kernels are [in, out]
            "kernel": per_layer(
                lambda p: np.concatenate([get(f"{p}{h}.weight", (d, d)).T for h in qkv], axis=1)
            ),
            "bias": per_layer(lambda p: np.concatenate([get(f"{p}{h}.bias", (d,)) for h in qkv])),
        }
    }
    out_width = {"attention_output": (d, d), "intermediate": (f, d), "output": (d, f)}
    for name, hf in names_of.dense.items():
        shape = out_width[name]
        layers[name] = {
            "kernel": per_layer(lambda p, hf=hf, shape=shape: get(f"{p}{hf}.weight", shape).T),
            "bias": per_layer(lambda p, hf=hf, shape=shape: get(f"{p}{hf}.bias", shape[:1])),
        }
    for name, hf in names_of.norms.items():
        layers[name] = {
            "scale": per_layer(lambda p, hf=hf: get(f"{p}{hf}.weight", (d,))),
            "bias": per_layer(lambda p, hf=hf: get(f"{p}{hf}.bias", (d,))),
        }
    params: dict[str, Any] = {"layers": layers}
    for name, n in _embedding_rows(cfg).items():
        arr = get(f"embeddings.{name}_embeddings.weight", (n, d))
        params[f"{name}_embeddings"] = {"embedding": jnp.asarray(arr)}
    params["embeddings_layer_norm"] = {
        "scale": jnp.asarray(get("embeddings.LayerNorm.weight", (d,))),
        "bias": jnp.asarray(get("embeddings.LayerNorm.bias", (d,))),
    }
    if names_of.relative_attention_bias:
        shape = (cfg.relative_attention_num_buckets, cfg.num_attention_heads)
        table = get(names_of.relative_attention_bias, shape)
        params["relative_attention_bias"] = {"embedding": jnp.asarray(table)}
    return {"params": params}
