"""Helpers shared by the benchmarks: timing, threads, the optional torch import."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any


def maxrss_mb() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_threads() -> int:
    """Cores this process may run on (what XLA's CPU thread pool uses)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def import_torch(threads: int | None = None):
    """``torch`` with ``threads`` intra-op threads, or ``(None, reason)`` if not importable."""
    try:
        import torch  # optional: docs/speed.md's bench install line
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return None, f"torch is not importable ({type(e).__name__}: {e})"
    torch.set_num_threads(threads or cpu_threads())
    return torch, ""


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each function, run in turn ``rounds`` times (A B A B ...).

    Interleaving makes load from other processes hit both sides alike; report ratios of
    medians, not absolute times.
    """
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t0)
    return out


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
