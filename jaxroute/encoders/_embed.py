"""Tokenising, length-bucketed batching and jit'd encoding of prompts, and a benchmark."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tokenizers
from safetensors import SafetensorError
from safetensors.numpy import load_file
from tqdm.auto import tqdm

from jaxroute.encoders import _model

DEFAULT_BUCKETS = (32, 64, 128, 256)
DEFAULT_BATCH_SIZE = 32


def check_prompts(prompts: Sequence[Any], sample_ids: Sequence[Any] | None = None) -> list[str]:
    """Checks every prompt is a non-blank string.

    Raises:
      TypeError: a prompt is not a string (names its index and sample id).
      ValueError: a prompt is empty or whitespace only (names its index and sample id).

    >>> check_prompts(["hi", " "], sample_ids=["a", "b"])
    Traceback (most recent call last):
    ...
    ValueError: prompt 1 (sample id 'b') is empty or whitespace only
    """
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    prompts = list(prompts)
    if sample_ids is not None and len(sample_ids) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(sample_ids)} sample ids")
    for i, p in enumerate(prompts):
        where = f"prompt {i}" + ("" if sample_ids is None else f" (sample id {sample_ids[i]!r})")
        if not isinstance(p, str):
            raise TypeError(f"{where} is {type(p).__name__}, not str: {p!r:.80}")
        if not p.strip():
            raise ValueError(f"{where} is empty or whitespace only")
    return prompts


class Encoder:
    """A loaded sentence encoder: config, params, tokenizer and per-bucket jit'd forward.

    Build with :func:`load_encoder`. ``encoder(prompts)`` returns float32 ``[N, D]``.

    Attributes:
      folder: the encoder folder.
      config: the :class:`BertConfig`.
      params: Flax params of :class:`SentenceEncoder`.
      max_length: tokens per prompt (longer prompts are truncated, [SEP] kept).
      fingerprint: :func:`encoder_fingerprint` of the folder.
      buckets: padded lengths; each prompt goes to the smallest bucket that fits it.
      num_traces: how many times the forward was traced (one per bucket shape used).
    """

    def __init__(
        self,
        folder: Path,
        config: _model.BertConfig,
        params: Any,
        tokenizer: tokenizers.Tokenizer,
        max_length: int,
        fingerprint: str,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
    ):
        self.folder = folder
        self.config = config
        self.params = params
        self.max_length = max_length
        self.fingerprint = fingerprint
        self.buckets = tuple(sorted({b for b in buckets if b < max_length} | {max_length}))
        self.num_traces = 0
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer = tokenizer
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0
        model = _model.SentenceEncoder(config)

        def forward(params, ids, mask):
            self.num_traces += 1  # runs at trace time only
            return model.apply(params, ids, mask)

        self._forward = jax.jit(forward)

    @property
    def dim(self) -> int:
        """D, the width of the sentence vectors."""
        return self.config.hidden_size

    def tokenize(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids per prompt, with [CLS]/[SEP], truncated to ``max_length``."""
        return [e.ids for e in self.tokenizer.encode_batch(list(prompts))]

    def bucket_of(self, n_tokens: int) -> int:
        """The smallest bucket length >= ``n_tokens``."""
        return next(b for b in self.buckets if b >= n_tokens)

    def __call__(
        self,
        prompts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        sample_ids: Sequence[Any] | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Encodes prompts; see :func:`encode`."""
        prompts = check_prompts(prompts, sample_ids)
        out = np.zeros((len(prompts), self.dim), np.float32)
        if not prompts:
            return out
        ids = self.tokenize(prompts)
        by_bucket: dict[int, list[int]] = {}
        for i, t in enumerate(ids):
            by_bucket.setdefault(self.bucket_of(len(t)), []).append(i)
        # A few prompts need not fill a whole batch of pad rows: shrink to a power of 2.
        batch_size = min(batch_size, 1 << (len(prompts) - 1).bit_length())
        bar = tqdm(total=len(prompts), desc="encoding", unit="prompt", disable=not progress)
        for length in sorted(by_bucket):
            rows = by_bucket[length]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                tok = np.full((batch_size, length), self._pad_id, np.int32)
                mask = np.zeros((batch_size, length), np.int32)
                for j, i in enumerate(chunk):
                    tok[j, : len(ids[i])] = ids[i]
                    mask[j, : len(ids[i])] = 1
                vec = self._forward(self.params, jnp.asarray(tok), jnp.asarray(mask))
                out[chunk] = np.asarray(vec)[: len(chunk)]
                bar.update(len(chunk))
        bar.close()
        return out

    def warmup(self, batch_size: int = DEFAULT_BATCH_SIZE, lengths: Sequence[int] | None = None):
        """Compiles the forward for each bucket length (all buckets by default)."""
        for length in lengths or self.buckets:
            z = jnp.zeros((batch_size, length), jnp.int32)
            self._forward(self.params, z, z).block_until_ready()


def load_encoder(
    encoder_dir: str | os.PathLike | None = None, *, buckets: Sequence[int] = DEFAULT_BUCKETS
) -> Encoder:
    """Loads an encoder from a Hugging Face-format folder (no torch, no hub).

    Args:
      encoder_dir: folder with config.json, model.safetensors, tokenizer.json (and
        optionally sentence_bert_config.json); None for the installed all-MiniLM-L6-v2.
      buckets: padded token lengths for batching; ``max_length`` is always added.

    Returns:
      An :class:`Encoder`.

    Raises:
      FileNotFoundError: the folder or one of its files is missing.
      ValueError: a file is malformed (names the file; missing tensors are listed).
    """
    folder = _model.resolve_encoder_dir(encoder_dir)
    cfg_path = folder / "config.json"
    config = _model.BertConfig.from_dict(_model.read_json(cfg_path), source=str(cfg_path))
    max_length = _model.read_max_length(folder, config)
    st_path = folder / "model.safetensors"
    try:
        tensors = load_file(st_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{st_path}: not a readable safetensors file ({e})") from e
    params = _model.params_from_tensors(tensors, config, source=str(st_path))
    tok_path = folder / "tokenizer.json"
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(tok_path))
    except Exception as e:  # tokenizers raises a bare Exception on bad files
        raise ValueError(f"{tok_path}: not a readable tokenizer.json ({e})") from e
    return Encoder(
        folder,
        config,
        params,
        tokenizer,
        max_length,
        _model.encoder_fingerprint(folder),
        buckets=buckets,
    )


_ENCODERS: dict[tuple[str, str], Encoder] = {}


def cached_encoder(encoder_dir: str | os.PathLike | None = None) -> Encoder:
    """:func:`load_encoder`, memoised per process by folder and content fingerprint."""
    folder = _model.resolve_encoder_dir(encoder_dir)
    key = (str(folder.resolve()), _model.encoder_fingerprint(folder))
    if key not in _ENCODERS:
        _ENCODERS[key] = load_encoder(folder)
    return _ENCODERS[key]


def encode(
    prompts: Sequence[str],
    encoder: Encoder | str | os.PathLike | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sample_ids: Sequence[Any] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Embeds prompts: float32 ``[N, D]`` L2-normalised mean-pooled vectors, input order.

    Prompts are tokenised, truncated to the encoder's ``max_length``, grouped into
    length buckets and run in fixed-size batches (the last one padded), so the forward
    compiles once per bucket used (the batch shrinks to the next power of two when
    there are fewer than ``batch_size`` prompts in all).

    Args:
      prompts: N non-blank strings.
      encoder: a loaded :class:`Encoder`, an encoder folder, or None for the default
        (folders are loaded once per process, see :func:`cached_encoder`).
      batch_size: rows per forward call.
      sample_ids: optional ids, only used to name a bad prompt in errors.
      progress: show a tqdm bar.

    Raises:
      TypeError, ValueError: see :func:`check_prompts`.
    """
    if not isinstance(encoder, Encoder):
        encoder = cached_encoder(encoder)
    return encoder(prompts, batch_size=batch_size, sample_ids=sample_ids, progress=progress)


def _synthetic_prompts(n: int, seed: int = 0) -> list[str]:
    """Deterministic RouterBench-like prompts of varied length (a few to ~400 words)."""
    rng = np.random.default_rng(seed)
    words = (
        "question answer which of the following best explains why a student model "
        "function returns list number water energy because option python code test"
    ).split()
    out = []
    for i in range(n):
        k = int(rng.choice([8, 30, 80, 200, 400]))
        body = " ".join(rng.choice(words, size=k))
        out.append(f"['Q{i}: {body}?', 'A:']")
    return out


def bench_encoder(
    n_prompts: int = 256,
    *,
    prompts: Sequence[str] | None = None,
    encoder_dir: str | os.PathLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    compare_torch: bool = True,
) -> dict[str, Any]:
    """Times the encoder (after compiling the buckets it needs) in prompts per second.

    If torch and sentence-transformers are importable (never required), the same
    prompts are encoded with them too and the ratio is reported.

    Args:
      n_prompts: how many synthetic prompts, when ``prompts`` is None.
      prompts: prompts to time instead.
      encoder_dir: encoder folder; None for the default.
      batch_size: rows per forward call.
      compare_torch: try the sentence-transformers figure.

    Returns:
      dict with ``n_prompts``, ``batch_size``, ``backend``, ``compile_s``,
      ``jaxroute_s``, ``jaxroute_prompts_per_s``, ``torch_prompts_per_s`` (or None),
      ``ratio`` (jaxroute / torch, or None).
    """
    prompts = list(prompts) if prompts is not None else _synthetic_prompts(n_prompts)
    enc = load_encoder(encoder_dir)
    t0 = time.perf_counter()  # compile the shapes the timed run will use
    lengths = sorted({enc.bucket_of(len(t)) for t in enc.tokenize(prompts)})
    enc.warmup(min(batch_size, 1 << (len(prompts) - 1).bit_length()), lengths)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc(prompts, batch_size=batch_size, progress=False)
    jax_s = time.perf_counter() - t0
    result: dict[str, Any] = {
        "n_prompts": len(prompts),
        "batch_size": batch_size,
        "backend": jax.default_backend(),
        "max_length": enc.max_length,
        "compile_s": compile_s,
        "jaxroute_s": jax_s,
        "jaxroute_prompts_per_s": len(prompts) / jax_s,
        "torch_prompts_per_s": None,
        "ratio": None,
    }
    if compare_torch:
        try:
            from sentence_transformers import SentenceTransformer  # optional
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            return result
        st = SentenceTransformer(str(enc.folder), device="cpu")
        st.encode(prompts[:batch_size], batch_size=batch_size)
        t0 = time.perf_counter()
        st.encode(prompts, batch_size=batch_size)
        torch_s = time.perf_counter() - t0
        result["torch_prompts_per_s"] = len(prompts) / torch_s
        result["ratio"] = result["jaxroute_prompts_per_s"] / result["torch_prompts_per_s"]
    return result
