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

from jaxroute.encoders import _model
from jaxroute.encoders._jit_cache import enable_compilation_cache

DEFAULT_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
DEFAULT_BATCH_SIZE = 64
# Tokens per forward call: rows = max_tokens // bucket length (at most the batch size).
# Measured on a 2-core CPU: in float32 a [512, 1536] feed-forward activation stays in
# cache (2 rows of 256 tokens ran 1.5x faster per prompt than 32 rows); in bfloat16 the
# AMX products want bigger calls (short prompts: 2048 tokens per call 1.4x faster than
# 512, long prompts even). See README, speed.
DEFAULT_MAX_TOKENS = 512
MAX_TOKENS_BY_DTYPE = {"float32": DEFAULT_MAX_TOKENS, "bfloat16": 2048}
# Short prompts may be packed side by side into rows of this many tokens (at most one
# prompt per PACK_MIN_TOKENS of the row), when that costs fewer FLOPs than padding each
# to its bucket (Encoder.plan); 0: never. Measured on a 2-core CPU, 256 prompts of 10-40
# tokens: float32 2.29 s one prompt a row, 1.54-1.59 s packed in rows of 96-128 tokens;
# bfloat16 0.72 s one a row, 0.75 s in rows of 64, 0.97 s in rows of 128 (its products
# are fast enough that the longer softmax rows and the [T, T] mask cost more than the
# padding saved). See README, speed.
PACK_LENGTH_BY_DTYPE = {"float32": 128, "bfloat16": 0}
PACK_MIN_TOKENS = 8


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
      buckets: padded lengths; a batch is padded to the smallest bucket that fits its
        longest prompt.
      num_traces: how many times the forward was traced (one per batch shape used).
      dtype: the matmul mode, ``"float32"`` or ``"bfloat16"`` (see
        :func:`jaxroute.encoders.resolve_dtype`); part of the feature cache's identity.
      max_tokens: the default token budget per forward call for this mode
        (``MAX_TOKENS_BY_DTYPE``).
      pack_length: the row length of packed calls (0: never pack; by default the
        mode's ``PACK_LENGTH_BY_DTYPE``); prompts up to this many tokens may share a row
        (see :meth:`plan`).
      max_segments: at most this many prompts share a packed row.
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
        dtype: str = "float32",
        pack_length: int | None = None,
    ):
        self.dtype = _model.resolve_dtype(dtype)
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
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0
        matmul_dtype = jnp.bfloat16 if self.dtype == "bfloat16" else None
        model = _model.SentenceEncoder(config, matmul_dtype=matmul_dtype)
        # The layer kernels are cast once here, not in every call.
        self._run_params = params if matmul_dtype is None else _cast_kernels(params, matmul_dtype)

        if pack_length is None:
            pack_length = PACK_LENGTH_BY_DTYPE[self.dtype]
        self.pack_length = min(int(pack_length), max_length)
        self.max_segments = max(1, self.pack_length // PACK_MIN_TOKENS)

        def forward(params, ids, mask, num_segments=0):
            self.num_traces += 1  # runs at trace time only
            return model.apply(params, ids, mask, num_segments)

        self._forward = jax.jit(forward, static_argnums=3)

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
        pack: bool = True,
    ) -> np.ndarray:
        """Encodes prompts; see :func:`encode`."""
        prompts = check_prompts(prompts, sample_ids)
        out = np.zeros((len(prompts), self.dim), np.float32)
        if not prompts:
            return out
        ids = self.tokenize(prompts)
        bar = tqdm(total=len(prompts), desc="encoding", unit="prompt", disable=not progress)
        lengths = [len(t) for t in ids]
        for rows, (n_rows, length) in self.plan(lengths, batch_size, max_tokens, pack):
            tok = np.full((n_rows, length), self._pad_id, np.int32)
            mask = np.zeros((n_rows, length), np.int32)  # segment ids: 1, 2, ... in a row
            for r, row in enumerate(rows):
                start = 0
                for s, i in enumerate(row, 1):
                    tok[r, start : start + lengths[i]] = ids[i]
                    mask[r, start : start + lengths[i]] = s
                    start += lengths[i]
            packed = any(len(row) > 1 for row in rows)
            segments = self.max_segments if packed else 0
            vec = np.asarray(self._forward(self._run_params, tok, mask, segments))
            for r, row in enumerate(rows):
                out[row] = vec[r, : len(row)] if packed else vec[r]
            bar.update(sum(len(row) for row in rows))
        bar.close()
        return out

    def plan(
        self,
        lengths: Sequence[int],
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int | None = None,
        pack: bool = True,
    ) -> list[tuple[list[list[int]], tuple[int, int]]]:
        """The forward calls that encode prompts of these token counts.

        Returns ``[(rows, (row count, row length))]``: each call's rows as lists of prompt
        indices (one prompt per row, or several side by side in a packed call).
        Prompts longer than :attr:`pack_length` go in :meth:`batches`. The shorter ones
        too, unless ``pack`` and packing them (:meth:`packed_batches`) costs fewer FLOPs
        (:meth:`flops` of the padded shapes): many short prompts of mixed lengths pack
        into far less padding; a few prompts, or prompts of one length, do not gain.
        """
        short = [i for i, n in enumerate(lengths) if n <= self.pack_length]
        long_ = [i for i, n in enumerate(lengths) if n > self.pack_length]

        def one_per_row(idx):
            got = self.batches([lengths[i] for i in idx], batch_size, max_tokens)
            return [([[idx[j]] for j in chunk], shape) for chunk, shape in got]

        plan = one_per_row(long_)
        plain = one_per_row(short)
        if pack and len(short) > 1:
            packed = self.packed_batches([lengths[i] for i in short], batch_size, max_tokens)
            packed = [([[short[j] for j in row] for row in rows], s) for rows, s in packed]
            if self.flops([s for _, s in packed]) < self.flops([s for _, s in plain]):
                return plan + packed
        return plan + plain

    def batches(
        self,
        lengths: Sequence[int],
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int | None = None,
    ) -> list[tuple[list[int], tuple[int, int]]]:
        """Groups prompts by token count: ``[(prompt indices, (rows, bucket length))]``.

        Prompts are sorted longest first and cut into batches padded only up to the
        bucket of their own longest prompt (as sentence-transformers pads to its
        longest, but with a fixed set of lengths, so that the forward compiles once per
        bucket). A batch of bucket length T has ``max(1, min(batch_size, max_tokens //
        T))`` rows: short prompts go many to a call, long ones few, and the activations
        of one call stay cache-sized. The last, partial batch shrinks to the next power
        of two rows, so it pays for at most as many pad rows as prompts.

        >>> enc = Encoder.__new__(Encoder); enc.buckets = (16, 32, 64)
        >>> [(len(c), shape) for c, shape in enc.batches([60, 5, 30, 9, 12], 4, 64)]
        [(1, (1, 64)), (2, (2, 32)), (2, (2, 16))]
        """
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        out = []
        start = 0
        while start < len(order):
            length = self.bucket_of(lengths[order[start]])
            rows = max(1, min(batch_size, max_tokens // length))
            chunk = order[start : start + rows]
            if len(chunk) < rows:
                rows = 1 << (len(chunk) - 1).bit_length()
            out.append((chunk, (rows, length)))
            start += len(chunk)
        return out

    def flops(self, shapes: Sequence[tuple[int, int]]) -> float:
        """Forward FLOPs of calls of these ``(rows, length)`` shapes (dense + attention)."""
        c = self.config
        d, f, layers = c.hidden_size, c.intermediate_size, c.num_hidden_layers
        return float(
            sum(r * t * layers * (2 * (4 * d * d + 2 * d * f) + 4 * t * d) for r, t in shapes)
        )

    def packed_batches(
        self,
        lengths: Sequence[int],
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_tokens: int | None = None,
    ) -> list[tuple[list[list[int]], tuple[int, int]]]:
        """Packs prompts (each at most :attr:`pack_length` tokens) into rows of
        :attr:`pack_length` tokens, at most :attr:`max_segments` prompts a row, and the
        rows into calls of ``max(1, min(batch_size, max_tokens // pack_length))`` rows
        (the last one shrunk to the next power of two): ``[(rows, (row count, length))]``.

        Best-fit decreasing: longest prompt first, into the row with the least room
        that fits it (a new row when none does).

        >>> enc = Encoder.__new__(Encoder); enc.pack_length, enc.max_segments = 16, 3
        >>> enc.packed_batches([9, 3, 7, 5, 2, 2, 1], batch_size=4, max_tokens=64)
        [([[0, 2], [3, 1, 4], [5, 6]], (4, 16))]
        """
        max_tokens = self.max_tokens if max_tokens is None else max_tokens
        cap, most = self.pack_length, self.max_segments
        if any(n > cap or n < 1 for n in lengths):
            raise ValueError(f"packed_batches: token counts must be in [1, {cap}]")
        rows: list[list[int]] = []
        room: dict[int, list[int]] = {}  # free tokens -> rows with that much room left
        free: list[int] = []
        for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
            n = lengths[i]
            fit = next((f for f in range(n, cap) if room.get(f)), None)
            if fit is None:
                r = len(rows)
                rows.append([])
                free.append(cap)
            else:
                r = room[fit].pop()
            rows[r].append(i)
            free[r] -= n
            if free[r] > 0 and len(rows[r]) < most:
                room.setdefault(free[r], []).append(r)
        per_call = max(1, min(batch_size, max_tokens // cap))
        out = []
        for start in range(0, len(rows), per_call):
            chunk = rows[start : start + per_call]
            n_rows = per_call if len(chunk) == per_call else 1 << (len(chunk) - 1).bit_length()
            out.append((chunk, (n_rows, cap)))
        return out

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
    pack_length: int | None = None,
) -> Encoder:
    """Loads an encoder from a Hugging Face-format folder (no torch, no hub).

    Args:
      encoder_dir: folder with config.json, model.safetensors, tokenizer.json (and
        optionally sentence_bert_config.json); None for the installed all-MiniLM-L6-v2.
      buckets: padded token lengths for batching; ``max_length`` is always added.
      dtype: matmul mode, ``"auto"``, ``"float32"`` or ``"bfloat16"`` (see
        :func:`jaxroute.encoders.resolve_dtype`).
      pack_length: row length for packing short prompts (see :class:`Encoder`; None: the
        mode's default, 0: never pack).

    Returns:
      An :class:`Encoder`.

    Raises:
      FileNotFoundError: the folder or one of its files is missing.
      ValueError: a file is malformed (names the file; missing tensors are listed), or
        ``dtype`` is not a known mode.
    """
    dtype = _model.resolve_dtype(dtype)
    folder = _model.resolve_encoder_dir(encoder_dir)
    enable_compilation_cache()
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
        dtype=dtype,
        pack_length=pack_length,
    )


_ENCODERS: dict[tuple[str, str, str], Encoder] = {}


def cached_encoder(encoder_dir: str | os.PathLike | None = None, dtype: str = "auto") -> Encoder:
    """:func:`load_encoder`, memoised per process by folder, content fingerprint and dtype."""
    dtype = _model.resolve_dtype(dtype)
    folder = _model.resolve_encoder_dir(encoder_dir)
    key = (str(folder.resolve()), _model.encoder_fingerprint(folder), dtype)
    if key not in _ENCODERS:
        _ENCODERS[key] = load_encoder(folder, dtype=dtype)
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
    pack: bool = True,
) -> np.ndarray:
    """Embeds prompts: float32 ``[N, D]`` L2-normalised mean-pooled vectors, input order.

    Prompts are tokenised, truncated to the encoder's ``max_length``, sorted by length
    and run in batches of at most ``batch_size`` rows and about ``max_tokens`` tokens,
    each padded to the bucket of its longest prompt (see :meth:`Encoder.batches`), so
    the forward compiles once per bucket used plus once for the last, partial batch.
    With ``pack`` (and an encoder whose ``pack_length`` is not 0: float32 mode by
    default) short prompts may instead share rows, side by side, when that costs fewer
    FLOPs (see :meth:`Encoder.plan`); the vectors are the same up to float rounding.
    Compiled programs persist on disk (see :func:`enable_compilation_cache`).

    Args:
      prompts: N non-blank strings.
      encoder: a loaded :class:`Encoder`, an encoder folder, or None for the default
        (folders are loaded once per process, see :func:`cached_encoder`).
      batch_size: at most this many rows per forward call.
      max_tokens: about this many (padded) tokens per forward call (None: the
        encoder's default for its matmul mode, ``MAX_TOKENS_BY_DTYPE``).
      sample_ids: optional ids, only used to name a bad prompt in errors.
      progress: show a tqdm bar.
      dtype: matmul mode when ``encoder`` is a folder or None (a loaded
        :class:`Encoder` keeps its own).
      pack: allow packed calls (False: one prompt per row, the bucket shapes only).

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
        pack=pack,
    )
