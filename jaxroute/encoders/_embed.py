"""Tokenising, length-bucketed batching and jit'd encoding of prompts."""

from __future__ import annotations

import os
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

from jaxroute.encoders import _dtype, _folder, _table, _weights
from jaxroute.encoders._config import BertConfig
from jaxroute.encoders._jit_cache import enable_compilation_cache
from jaxroute.encoders._model import SentenceEncoder

DEFAULT_BUCKETS = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96, 128, 192, 256)
DEFAULT_BATCH_SIZE = 64
# Tokens per forward call: rows = max_tokens // bucket length (at most the batch size).
# Measured on a 2-core CPU: in float32 a [512, 1536] feed-forward activation stays in
# cache (2 rows of 256 tokens ran 1.5x faster per prompt than 32 rows); in bfloat16 the
# AMX products want bigger calls (short prompts: 2048 tokens per call 1.4x faster than
# 512, long prompts even). See docs/speed.md.
DEFAULT_MAX_TOKENS = 512
MAX_TOKENS_BY_DTYPE = {"float32": DEFAULT_MAX_TOKENS, "bfloat16": 2048}
# A forward call's fixed cost, in padded tokens, when batches() chooses where to cut.
# A 16-token bfloat16 call takes about 7 ms here, ~120 tokens of a big call's time; 64 is
# the value docs/speed.md's timings used (it cuts a little more often, into fewer rows).
CALL_OVERHEAD_TOKENS = 64


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
      name: its name in the encoder table, or its folder as given.
      config: the :class:`BertConfig`.
      params: Flax params of :class:`SentenceEncoder`.
      max_length: tokens per prompt (longer prompts are truncated, [SEP] kept).
      fingerprint: :func:`encoder_fingerprint` of the folder.
      buckets: padded lengths; a batch is padded to the smallest bucket that fits its
        longest prompt.
      num_traces: how many times the forward was traced (one per batch shape used).
      dtype: the matmul mode, ``"float32"`` or ``"bfloat16"`` (see
        :func:`jaxroute.encoders.resolve_dtype`); part of the feature cache's identity.
      max_tokens: the default token budget per forward call for this mode
        (``MAX_TOKENS_BY_DTYPE``).
      pooling: how token states become one vector (a key of ``POOLINGS``).
      normalize: whether the vectors are L2-normalised.
    """

    def __init__(
        self,
        folder: Path,
        config: BertConfig,
        params: Any,
        tokenizer: tokenizers.Tokenizer,
        max_length: int,
        fingerprint: str,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        dtype: str = "float32",
        pooling: str = "mean",
        normalize: bool = True,
        name: str = "",
    ):
        self.dtype = _dtype.resolve_dtype(dtype)
        self.name = name or str(folder)
        self.pooling, self.normalize = pooling, normalize
        self.max_tokens = MAX_TOKENS_BY_DTYPE[self.dtype]
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
        self._pad_id = config.pad_token_id
        matmul_dtype = jnp.bfloat16 if self.dtype == "bfloat16" else None
        model = SentenceEncoder(
            config, matmul_dtype=matmul_dtype, pooling=pooling, normalize=normalize
        )
        # The layer kernels are cast once here, not in every call.
        self._run_params = params if matmul_dtype is None else _cast_kernels(params, matmul_dtype)

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
        max_tokens: int | None = None,
        sample_ids: Sequence[Any] | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Encodes prompts; see :func:`encode`."""
        prompts = check_prompts(prompts, sample_ids)
        out = np.zeros((len(prompts), self.dim), np.float32)
        if not prompts:
            return out
        ids = self.tokenize(prompts)
        bar = tqdm(total=len(prompts), desc="encoding", unit="prompt", disable=not progress)
        lengths = [len(t) for t in ids]
        for chunk, (rows, length) in self.batches(lengths, batch_size, max_tokens):
            tok = np.full((rows, length), self._pad_id, np.int32)
            mask = np.zeros((rows, length), np.int32)
            for j, i in enumerate(chunk):
                tok[j, : len(ids[i])] = ids[i]
                mask[j, : len(ids[i])] = 1
            vec = self._forward(self._run_params, jnp.asarray(tok), jnp.asarray(mask))
            out[chunk] = np.asarray(vec)[: len(chunk)]
            bar.update(len(chunk))
        bar.close()
        return out

    def batches(
        self,
        lengths: Sequence[int],
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int | None = None,
    ) -> list[tuple[list[int], tuple[int, int]]]:
        """Groups prompts by token count: ``[(prompt indices, (rows, bucket length))]``.

        Prompts are sorted longest first and cut into runs, each one forward call padded
        only up to the bucket of its own longest prompt (as sentence-transformers pads
        to its longest, but with a fixed set of lengths, so that the forward compiles
        once per shape). A call of bucket length T holds at most ``max(1,
        min(batch_size, max_tokens // T))`` rows (the activations of one call stay
        cache-sized); a call of fewer prompts is padded to the next power of two rows,
        so the shapes stay few. The cuts minimise the padded tokens plus
        :data:`CALL_OVERHEAD_TOKENS` per call (dynamic programming over the sorted
        prompts): one prompt of 30 tokens and seven of 14 go in two calls, ``1 × 32``
        and ``8 × 16`` (160 tokens + 2 calls), not one ``8 × 32`` (256 tokens + 1 call).

        >>> enc = Encoder.__new__(Encoder); enc.buckets = (16, 32, 64)
        >>> [(len(c), shape) for c, shape in enc.batches([14] * 7 + [30], 8, 256)]
        [(1, (1, 32)), (7, (8, 16))]
        """
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        n = len(order)
        cost = [0.0] + [float("inf")] * n  # cost[j]: the best cuts of the first j prompts
        cut: list[tuple[int, int, int]] = [(0, 0, 0)] * (n + 1)  # (start, rows, length)
        for i in range(n):
            length = self.bucket_of(lengths[order[i]])
            cap = max(1, min(batch_size, max_tokens // length))
            for k in range(1, min(cap, n - i) + 1):
                rows = cap if k == cap else min(cap, 1 << (k - 1).bit_length())
                c = cost[i] + rows * length + CALL_OVERHEAD_TOKENS
                if c < cost[i + k]:
                    cost[i + k], cut[i + k] = c, (i, rows, length)
        out = []
        j = n
        while j:
            i, rows, length = cut[j]
            out.append((order[i:j], (rows, length)))
            j = i
        return out[::-1]

    def warmup(
        self,
        batch_size: int = DEFAULT_BATCH_SIZE,
        lengths: Sequence[int] | None = None,
        max_tokens: int | None = None,
    ):
        """Compiles the full-batch forward of each bucket length (all buckets by default)."""
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        for length in lengths or self.buckets:
            rows = max(1, min(batch_size, max_tokens // length))
            z = jnp.zeros((rows, length), jnp.int32)
            self._forward(self._run_params, z, z).block_until_ready()


def _cast_kernels(params: Any, dtype: Any) -> Any:
    """``params`` with the transformer layers' Dense kernels cast to ``dtype``."""
    layers = {
        name: ({**p, "kernel": p["kernel"].astype(dtype)} if "kernel" in p else p)
        for name, p in params["params"]["layers"].items()
    }
    return {"params": {**params["params"], "layers": layers}}


def load_encoder(
    encoder_dir: str | os.PathLike | None = None,
    *,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    dtype: str = "auto",
) -> Encoder:
    """Loads an encoder by name or from a Hugging Face-format folder (no torch, no hub).

    Args:
      encoder_dir: a name of the encoder table (``jaxroute.encoders.ENCODERS``), a
        folder with config.json, model.safetensors, tokenizer.json (and optionally
        sentence-transformers' files), or None for all-MiniLM-L6-v2.
      buckets: padded token lengths for batching; ``max_length`` is always added.
      dtype: matmul mode, ``"auto"``, ``"float32"`` or ``"bfloat16"`` (see
        :func:`jaxroute.encoders.resolve_dtype`).

    Returns:
      An :class:`Encoder`.

    Raises:
      FileNotFoundError: the folder or one of its files is missing.
      ValueError: a file is malformed (names the file; missing tensors are listed), or
        ``dtype`` is not a known mode.
    """
    found = _table.resolve(encoder_dir)
    dtype = _dtype.resolve_dtype(found.default_dtype if dtype == "auto" else dtype)
    folder = found.folder
    enable_compilation_cache()
    st_path = folder / "model.safetensors"
    try:
        tensors = load_file(st_path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{st_path}: not a readable safetensors file ({e})") from e
    params = _weights.params_from_tensors(tensors, found.config, source=str(st_path))
    tok_path = folder / "tokenizer.json"
    try:
        tokenizer = tokenizers.Tokenizer.from_file(str(tok_path))
    except Exception as e:  # tokenizers raises a bare Exception on bad files
        raise ValueError(f"{tok_path}: not a readable tokenizer.json ({e})") from e
    return Encoder(
        folder,
        found.config,
        params,
        tokenizer,
        found.max_length,
        _folder.encoder_fingerprint(folder),
        buckets=buckets,
        dtype=dtype,
        pooling=found.pooling,
        normalize=found.normalize,
        name=found.name,
    )


_ENCODERS: dict[tuple, Encoder] = {}


def cached_encoder(encoder_dir: str | os.PathLike | None = None, dtype: str = "auto") -> Encoder:
    """:func:`load_encoder`, memoised per process by folder, content fingerprint, pooling
    and dtype."""
    found = _table.resolve(encoder_dir)
    dtype = _dtype.resolve_dtype(found.default_dtype if dtype == "auto" else dtype)
    fingerprint = _folder.encoder_fingerprint(found.folder)
    key = (str(found.folder.resolve()), fingerprint, found.pooling, found.normalize, dtype)
    if key not in _ENCODERS:
        _ENCODERS[key] = load_encoder(encoder_dir, dtype=dtype)
    return _ENCODERS[key]


def encode(
    prompts: Sequence[str],
    encoder: Encoder | str | os.PathLike | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_tokens: int | None = None,
    sample_ids: Sequence[Any] | None = None,
    progress: bool = True,
    dtype: str = "auto",
) -> np.ndarray:
    """Embeds prompts: float32 ``[N, D]`` L2-normalised mean-pooled vectors, input order.

    Prompts are tokenised, truncated to the encoder's ``max_length``, sorted by length
    and run in batches of at most ``batch_size`` rows and about ``max_tokens`` tokens,
    each padded to the bucket of its longest prompt and to a power of two rows when not
    full (see :meth:`Encoder.batches`), so the forward compiles once per shape used.
    Compiled programs persist on disk (see :func:`enable_compilation_cache`).

    Args:
      prompts: N non-blank strings.
      encoder: a loaded :class:`Encoder`, a name of the encoder table, an encoder
        folder, or None for the default (loaded once per process, see
        :func:`cached_encoder`).
      batch_size: at most this many rows per forward call.
      max_tokens: about this many (padded) tokens per forward call (None: the
        encoder's default for its matmul mode, ``MAX_TOKENS_BY_DTYPE``).
      sample_ids: optional ids, only used to name a bad prompt in errors.
      progress: show a tqdm bar.
      dtype: matmul mode when ``encoder`` is a folder or None (a loaded
        :class:`Encoder` keeps its own).

    Raises:
      TypeError, ValueError: see :func:`check_prompts`.
    """
    if not isinstance(encoder, Encoder):
        encoder = cached_encoder(encoder, dtype)
    return encoder(
        prompts,
        batch_size=batch_size,
        max_tokens=max_tokens,
        sample_ids=sample_ids,
        progress=progress,
    )
