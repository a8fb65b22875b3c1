"""The encoder's matmul mode: ``float32``, ``bfloat16``, or ``auto`` chosen by the CPU.

``auto`` reads the CPU's flags (``/proc/cpuinfo``) and picks bfloat16 where the CPU
multiplies bfloat16 matrices in hardware: the flags in :data:`NATIVE_BF16_FLAGS`, each
measured faster in bfloat16 than in float32 (docs/speed.md).
"""

from __future__ import annotations

import functools

import jax

# Encoder matmul modes (``config.features.encoder_dtype``, ``load_encoder(dtype=...)``).
ENCODER_DTYPES = ("auto", "float32", "bfloat16")
# CPU flag -> where the bfloat16 mode was measured faster than float32 with it
# (sentence-transformers' speed = 1; all-MiniLM-L6-v2, long / short prompts).
NATIVE_BF16_FLAGS = {
    # Intel AMX-BF16 tiles: products about 3x faster than float32.
    "amx_bf16": "Intel Sapphire Rapids (AMX-BF16): bfloat16 about 3x float32 products",
    # AVX512-BF16 dot products without AMX: bfloat16 2.09x / 1.84x against float32
    # 1.13-1.32x / 1.18x, parity 0.99997 (an AMD EPYC).
    "avx512_bf16": "AMD EPYC (AVX512-BF16, no AMX): bfloat16 2.09x / 1.84x, float32 1.32x / 1.18x",
}
CPUINFO = "/proc/cpuinfo"


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The ``flags`` of the first CPU in ``cpuinfo`` (default :data:`CPUINFO`; empty
    where it cannot be read).

    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    ...     _ = f.write("processor : 0\\nflags\\t\\t: fpu sse avx512_bf16\\n")
    >>> sorted(cpu_flags(f.name)); os.unlink(f.name)
    ['avx512_bf16', 'fpu', 'sse']
    """
    try:
        with open(cpuinfo or CPUINFO, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def native_bf16_flag(flags: frozenset[str] | set[str]) -> str | None:
    """The first flag of :data:`NATIVE_BF16_FLAGS` among ``flags``, or None.

    >>> native_bf16_flag({"sse", "avx512_bf16"}), native_bf16_flag({"avx512f"})
    ('avx512_bf16', None)
    """
    return next((f for f in NATIVE_BF16_FLAGS if f in flags), None)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (a flag of
    :data:`NATIVE_BF16_FLAGS` in ``/proc/cpuinfo``; False where there is none)."""
    return native_bf16_flag(cpu_flags()) is not None


def resolve_dtype(dtype: str) -> str:
    """The encoder's matmul mode for ``dtype`` (one of :data:`ENCODER_DTYPES`).

    ``"float32"``: every product in float32 (parity with the PyTorch reference to
    ~1e-7). ``"bfloat16"``: the dense and attention products take bfloat16 inputs and
    accumulate in float32; embeddings, LayerNorm, softmax, GELU and pooling stay
    float32, and GELU takes its tanh form (its error, < 1e-3, is below the bfloat16
    rounding of its output, which feeds a bfloat16 product; 17% faster on long
    prompts). all-MiniLM-L6-v2: min cosine 0.99997 to the float32 vectors on 6,108 real
    prompts (docs/speed.md). ``"auto"``: bfloat16 on a CPU backend whose CPU has a flag
    of :data:`NATIVE_BF16_FLAGS` (AMX-BF16 or AVX512-BF16, where the bfloat16 mode was
    measured faster), float32 elsewhere.

    Raises:
      ValueError: ``dtype`` is not one of :data:`ENCODER_DTYPES`.
    """
    if dtype not in ENCODER_DTYPES:
        raise ValueError(f"encoder dtype must be one of {', '.join(ENCODER_DTYPES)}, got {dtype!r}")
    if dtype == "auto":
        native = jax.default_backend() == "cpu" and cpu_has_native_bf16()
        return "bfloat16" if native else "float32"
    return dtype
