"""A Flax encoder of the table (MiniLM by default) against sentence-transformers on the
same prompts and threads."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxroute import encoders
from jaxroute._bench import _common


def synthetic_prompts(n: int, kind: str, seed: int = 0) -> list[str]:
    """Deterministic RouterBench-like prompts.

    ``kind="long"``: 5-shot-like stringified turn lists of 250-500 words (past MiniLM's
    256 tokens, so most are truncated, as full 5-shot prompts are). ``kind="short"``:
    single questions of 8-35 words (about 10-40 tokens).
    """
    rng = np.random.default_rng([seed, 0 if kind == "long" else 1])
    words = (
        "question answer which of the following best explains why a student model "
        "function returns list number water energy because option python code test "
        "sentence blank fill plant light heat small large first second"
    ).split()
    out = []
    for i in range(n):
        if kind == "long":
            shots = []
            for j in range(6):
                body = " ".join(rng.choice(words, size=int(rng.integers(35, 80))))
                shots.append(f"Q{j}: {body}?\\nA: {rng.choice(words)}" if j < 5 else f"Q: {body}?")
            out.append("['" + "\\n\\n".join(shots) + "', 'A:']")
        elif kind == "short":
            body = " ".join(rng.choice(words, size=int(rng.integers(8, 36))))
            out.append(f"Q{i}: {body}?")
        else:
            raise ValueError(f"unknown prompt kind {kind!r} (long, short)")
    return out


def _time_one(
    name: str,
    prompts: list[str],
    enc,
    st,
    torch_batch_size: int,
    rounds: int,
    enc32=None,
    min_seconds: float = 2.0,
) -> dict[str, Any]:
    lengths = [len(t) for t in enc.tokenize(prompts)]
    t0 = time.perf_counter()
    vec = enc(prompts, progress=False)  # compiles its shapes
    first_s = time.perf_counter() - t0
    res: dict[str, Any] = {
        "n_prompts": len(prompts),
        "tokens_mean": float(np.mean(lengths)),
        "tokens_max": int(max(lengths)),
        "jaxroute_first_call_s": first_s,
    }
    fns = {"jaxroute": lambda: enc(prompts, progress=False)}
    if enc32 is not None:  # the float32 mode beside a bfloat16 default
        vec32 = enc32(prompts, progress=False)
        res["float32_vs_default_min_cosine"] = float(np.min(np.sum(vec * vec32, axis=1)))
        fns["jaxroute_float32"] = lambda: enc32(prompts, progress=False)
    if st is not None:
        t0 = time.perf_counter()
        ref = st.encode(prompts, batch_size=torch_batch_size, convert_to_numpy=True)
        res["torch_first_call_s"] = time.perf_counter() - t0
        fns["torch"] = lambda: st.encode(
            prompts, batch_size=torch_batch_size, convert_to_numpy=True
        )
        ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        res["parity_min_cosine"] = float(np.min(np.sum(vec * ref, axis=1)))
        if enc32 is not None:
            res["float32_parity_min_cosine"] = float(np.min(np.sum(vec32 * ref, axis=1)))
    # A set whose call is short gets more rounds (at least ~min_seconds of jaxroute
    # calls, at most 5x ``rounds``): the median of 3 calls of 0.3 s moved the ratio by
    # +-0.15.
    res["rounds"] = rounds
    if min_seconds > 0:
        t0 = time.perf_counter()
        enc(prompts, progress=False)
        steady_s = time.perf_counter() - t0
        extra = math.ceil(min_seconds / max(steady_s, 1e-3))
        res["rounds"] = max(rounds, min(5 * rounds, extra))
    times = _common.interleaved(fns, res["rounds"])
    res["jaxroute_s"] = _common.median(times["jaxroute"])
    res["jaxroute_prompts_per_s"] = len(prompts) / res["jaxroute_s"]
    if enc32 is not None:
        res["jaxroute_float32_s"] = _common.median(times["jaxroute_float32"])
    if st is not None:
        res["torch_s"] = _common.median(times["torch"])
        res["torch_prompts_per_s"] = len(prompts) / res["torch_s"]
        res["ratio"] = res["jaxroute_prompts_per_s"] / res["torch_prompts_per_s"]
        if enc32 is not None:
            res["float32_ratio"] = res["torch_s"] / res["jaxroute_float32_s"]
    return res


def bench_encoder(
    n_prompts: int = 128,
    *,
    prompts: dict[str, Sequence[str]] | None = None,
    encoder_dir: str | os.PathLike | None = None,
    torch_batch_size: int = 32,
    rounds: int = 5,
    compare_torch: bool = True,
    dtype: str = "auto",
    min_seconds: float = 2.0,
) -> dict[str, Any]:
    """jaxroute's prompts/s against sentence-transformers' on long and short prompts.

    Both encode the same prompts on the same CPU threads, in alternating rounds, each
    with its own batching: jaxroute its default (length-sorted batches of about
    ``MAX_TOKENS_BY_DTYPE[dtype]`` tokens), sentence-transformers its default (length-sorted
    batches of ``torch_batch_size`` = 32 rows, padded to the longest). The ratio of
    median times is reported per prompt set (``rounds`` of them: at least ``rounds``, more
    for a set whose call takes under ~0.7 s), and ``ratio`` is the smaller one. The
    first call (jaxroute: compiling its shapes; sentence-transformers: warming up) is
    reported beside the steady state.

    jaxroute runs in its default matmul mode (``dtype="auto"``: bfloat16 operands with
    float32 accumulation on a CPU with AMX-BF16 or AVX512-BF16, else float32; see
    :func:`jaxroute.encoders.resolve_dtype`); sentence-transformers in its default,
    float32. When the mode is bfloat16, the float32 mode is timed in the same rounds
    and reported beside it (``float32_ratio``, ``float32_parity_min_cosine``), so both
    comparisons come from one run.

    Args:
      n_prompts: synthetic prompts per set, when ``prompts`` is None.
      prompts: ``{set name: prompts}`` to time instead of the synthetic long and short sets.
      encoder_dir: a name of the encoder table (``jaxroute.encoders.ENCODERS``, e.g.
        ``"all-mpnet-base-v2"``), an encoder folder, or None for all-MiniLM-L6-v2.
      torch_batch_size: sentence-transformers' batch size (its default, 32).
      rounds: timed rounds per side.
      compare_torch: time sentence-transformers too when it is importable.
      dtype: jaxroute's matmul mode (``"auto"``, ``"float32"``, ``"bfloat16"``).
      min_seconds: time each set for at least about this long (more rounds for short
        calls); 0 for exactly ``rounds``.

    Returns:
      dict: ``ratio`` (min over sets, or None), ``sets`` (per-set figures:
      ``jaxroute_prompts_per_s``, ``torch_prompts_per_s``, ``ratio``,
      ``parity_min_cosine``, ``jaxroute_first_call_s``, ...), ``threads``, ``dtype``,
      ``float32_ratio`` (bfloat16 mode only), ``encoder`` (its name), ``why`` when there
      is no ratio, ``what``.
    """
    sets = (
        {k: list(v) for k, v in prompts.items()}
        if prompts is not None
        else {k: synthetic_prompts(n_prompts, k) for k in ("long", "short")}
    )
    threads = _common.cpu_threads()
    enc = encoders.load_encoder(encoder_dir, dtype=dtype)
    enc32 = None if enc.dtype == "float32" else encoders.load_encoder(encoder_dir, dtype="float32")
    st, why = None, ""
    if compare_torch:
        torch, why = _common.import_torch(threads)
        if torch is not None:
            try:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer
            except Exception as e:  # noqa: BLE001 - any import failure means "not available"
                why = f"sentence-transformers is not importable ({type(e).__name__}: {e})"
            else:
                st = SentenceTransformer(str(enc.folder), device="cpu")
    else:
        why = "compare_torch=False"
    per = {
        k: _time_one(k, v, enc, st, torch_batch_size, rounds, enc32, min_seconds)
        for k, v in sets.items()
    }
    ratios = [r["ratio"] for r in per.values() if "ratio" in r]
    out: dict[str, Any] = {
        "ratio": min(ratios) if ratios else None,
        "sets": per,
        "threads": threads,
        "dtype": enc.dtype,
        "encoder": enc.name,
        "jaxroute_batching": f"sorted by length, cut where padding plus a per-call cost is "
        f"least, <= {enc.max_tokens} tokens per call",
        "torch_batch_size": torch_batch_size,
        "max_length": enc.max_length,
        "jaxroute_prompts_per_s": min(r["jaxroute_prompts_per_s"] for r in per.values()),
        "jaxroute_first_call_s": sum(r["jaxroute_first_call_s"] for r in per.values()),
        "peak_mem_mb": _common.maxrss_mb(),
        "what": f"{enc.name} prompts/s ({enc.dtype} matmuls), "
        + (
            "jaxroute / sentence-transformers: "
            + ", ".join(f"{k} {r['ratio']:.2f}x" for k, r in per.items())
            + (
                "; float32 mode: "
                + ", ".join(f"{k} {r['float32_ratio']:.2f}x" for k, r in per.items())
                if enc32 is not None
                else ""
            )
            if ratios
            else "jaxroute: "
            + ", ".join(f"{k} {r['jaxroute_prompts_per_s']:.1f}" for k, r in per.items())
        ),
    }
    if st is not None:
        out["parity_min_cosine"] = min(r["parity_min_cosine"] for r in per.values())
        if enc32 is not None:
            out["float32_ratio"] = min(r["float32_ratio"] for r in per.values())
            out["float32_parity_min_cosine"] = min(
                r["float32_parity_min_cosine"] for r in per.values()
            )
    else:
        out["why"] = f"no ratio: {why}"
    return out
