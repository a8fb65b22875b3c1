"""Encoder architectures and their configs: the fields of a Hugging Face config.json
that the Flax port reads, checked, and the table of supported ``model_type`` values."""

from __future__ import annotations

import dataclasses
from typing import Any

_REQUIRED_CONFIG_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)


@dataclasses.dataclass(frozen=True)
class Architecture:
    """How one ``model_type`` differs from BERT.

    Attributes:
      position_ids: a key of ``jaxroute.encoders._model.POSITION_IDS``: ``"absolute"``
        (0, 1, ..., T-1) or ``"after_padding"`` (token ``t``'s position is
        ``pad_token_id`` + its count of non-padding tokens up to ``t``, padding at
        ``pad_token_id``: RoBERTa's and MPNet's ids).
      token_types: whether it has a token-type embedding table.
      relative_attention: whether every layer's attention scores add a learnt
        T5-style bias of the bucketed relative position, one table shared by all layers
        (MPNet).
      prefix: the prefix its task heads put before the tensor names (stripped).
      defaults: config.json fields it leaves out, with their values.
    """

    position_ids: str
    token_types: bool
    relative_attention: bool
    prefix: str
    defaults: dict[str, Any] = dataclasses.field(default_factory=dict)


_ROBERTA = Architecture(
    "after_padding",
    token_types=True,
    relative_attention=False,
    prefix="roberta.",
    defaults={"pad_token_id": 1, "type_vocab_size": 1, "layer_norm_eps": 1e-5},
)
# model_type -> architecture; a new BERT-family architecture is one entry here and one
# tensor-name entry in jaxroute/encoders/_weights.py.
ARCHITECTURES = {
    "bert": Architecture("absolute", token_types=True, relative_attention=False, prefix="bert."),
    # RoBERTa and XLM-R: BERT's layers and tensor names, positions after the padding id.
    "roberta": _ROBERTA,
    "xlm-roberta": _ROBERTA,
    "mpnet": Architecture(
        "after_padding",
        token_types=False,
        relative_attention=True,
        prefix="mpnet.",
        defaults={"type_vocab_size": 0, "pad_token_id": 1, "layer_norm_eps": 1e-5},
    ),
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The fields of a BERT-family config.json (``model_type`` a key of
    :data:`ARCHITECTURES`: bert, roberta, xlm-roberta, mpnet) the encoder uses.

    Attributes:
      vocab_size: rows of the word embedding table.
      hidden_size: width D of every hidden state (and of the sentence vector).
      num_hidden_layers: number of transformer layers.
      num_attention_heads: heads per self-attention; must divide ``hidden_size``.
      intermediate_size: width of the feed-forward layer.
      max_position_embeddings: rows of the position embedding table.
      type_vocab_size: rows of the token-type embedding table (0: none).
      layer_norm_eps: epsilon of every LayerNorm.
      hidden_act: feed-forward activation; only ``"gelu"`` (exact, erf form) is supported.
      model_type: a key of :data:`ARCHITECTURES`.
      pad_token_id: the padding token (the origin of ``"after_padding"`` positions).
      relative_attention_num_buckets: buckets of the relative-position bias (MPNet).
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
    model_type: str = "bert"
    pad_token_id: int = 0
    relative_attention_num_buckets: int = 32

    @property
    def architecture(self) -> Architecture:
        """This config's entry of :data:`ARCHITECTURES`."""
        return ARCHITECTURES[self.model_type]

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> BertConfig:
        """Builds a config from a parsed config.json, failing on missing or bad fields."""
        model_type = d.get("model_type", "bert")
        if model_type not in ARCHITECTURES:
            raise ValueError(
                f"{source}: field 'model_type' is {model_type!r}; supported: "
                f"{', '.join(ARCHITECTURES)}"
            )
        arch = ARCHITECTURES[model_type]
        missing = [k for k in _REQUIRED_CONFIG_KEYS if k not in d]
        if missing:
            raise ValueError(f"{source}: missing field(s) {missing}")
        fields = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in d.items() if k in fields and v is not None}
        if not arch.token_types:
            given.pop("type_vocab_size", None)
        cfg = cls(**{**arch.defaults, **given, "model_type": model_type})
        positive = _REQUIRED_CONFIG_KEYS + (("type_vocab_size",) if arch.token_types else ())
        positive += ("relative_attention_num_buckets",) if arch.relative_attention else ()
        for k in positive:
            v = getattr(cfg, k)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{source}: field {k!r} must be a positive integer, got {v!r}")
        if not isinstance(cfg.pad_token_id, int) or not 0 <= cfg.pad_token_id < cfg.vocab_size:
            raise ValueError(
                f"{source}: field 'pad_token_id' must be a token id, got {cfg.pad_token_id!r}"
            )
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
