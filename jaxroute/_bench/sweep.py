"""Benchmark: the jitted event sweep against a straightforward NumPy loop over budgets.

Run: ``python -m jaxroute.launch.benchmark --only=sweep``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import jax
import numpy as np

from jaxroute.routing.sweep import budget_sweep


def synthetic_problem(n_prompts: int, n_models: int, n_routers: int, seed: int):
    """Random 0/1 quality, log-normal costs, noisy scores and predicted costs."""
    rng = np.random.default_rng(seed)
    base_q = np.linspace(0.3, 0.9, n_models)
    quality = (rng.random((n_prompts, n_models)) < base_q).astype(np.float32)
    scale = np.geomspace(1e-5, 1e-2, n_models)
    cost = (np.exp(rng.normal(size=(n_prompts, n_models))) * scale).astype(np.float32)
    noise = rng.normal(scale=0.3, size=(n_routers, n_prompts, n_models))
    scores = (quality[None] + noise).astype(np.float32)
    pc_noise = np.exp(rng.normal(scale=0.3, size=(n_routers, n_prompts, n_models)))
    pred_costs = (cost[None] * pc_noise).astype(np.float32)
    return scores, pred_costs, quality, cost


def numpy_loop_sweep(scores, pred_costs, quality, cost, budgets, with_shares=True):
    """The reference approach: for each budget, mask, argmax, fall back, gather, mean
    (and, with ``with_shares``, a bincount of the choices)."""
    n = quality.shape[0]
    rows = np.arange(n)
    out_q = np.empty(len(budgets))
    out_c = np.empty(len(budgets))
    out_s = np.empty((len(budgets), quality.shape[1]))
    cheapest = np.argmin(pred_costs, axis=1)
    for j, b in enumerate(budgets):
        feasible = pred_costs <= b
        choice = np.argmax(np.where(feasible, scores, -np.inf), axis=1)
        choice = np.where(feasible.any(axis=1), choice, cheapest)
        out_q[j] = quality[rows, choice].astype(np.float64).mean()
        out_c[j] = cost[rows, choice].astype(np.float64).mean()
        if with_shares:
            out_s[j] = np.bincount(choice, minlength=quality.shape[1]) / n
    return out_q, out_c, out_s


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _jax_peak_child(n_budgets, n_prompts, n_models, n_routers, seed) -> dict[str, float]:
    """Runs in a fresh process: peak RSS of the jax sweep over the post-setup RSS."""
    s, pc, y, c = synthetic_problem(n_prompts, n_models, n_routers, seed)
    budgets = np.geomspace(c.min(), c.max(), n_budgets)
    budget_sweep(s[:, :8], pc[:, :8], y[:8], c[:8], budgets[:2])  # runtime warm-up
    before = _rss_mb()
    budget_sweep(s, pc, y, c, budgets)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"maxrss_mb": peak, "rss_before_mb": before}


def bench_sweep(
    n_budgets: int = 1000,
    n_prompts: int = 36000,
    n_models: int = 11,
    n_routers: int = 1,
    seed: int = 0,
    *,
    repeats: int = 5,
    baseline_budgets: int | None = None,
    memory_subprocess: bool = True,
    with_shares: bool = True,
) -> dict[str, Any]:
    """Times the jitted event sweep (after compile) against the NumPy loop, same data.

    Args:
      n_budgets: budgets per router (log-spaced over the true costs).
      n_prompts: prompts.
      n_models: models.
      n_routers: routers swept at once (the loop runs once per router).
      seed: data seed.
      repeats: timed repetitions of the jax sweep (best is reported).
      baseline_budgets: time the loop on this many budgets and scale linearly to
        ``n_budgets`` (default: all, exact).
      memory_subprocess: measure the jax sweep's peak memory in a fresh process
        (``ru_maxrss``); otherwise ``peak_mem_mb`` is ``None``.
      with_shares: both sides also compute per-model shares (``False``: means only).

    Returns:
      dict: ``ratio`` (baseline_s / jaxroute_s), ``baseline_s``, ``jaxroute_s``,
      ``compile_s``, ``peak_mem_mb`` (jax: peak RSS minus RSS before the sweep, in a fresh
      process), ``peak_rss_mb`` (that process's whole peak RSS), ``baseline_peak_mem_mb``
      (tracemalloc peak of the loop), ``max_rel_err`` (jax vs loop means), and the sizes.
    """
    s, pc, y, c = synthetic_problem(n_prompts, n_models, n_routers, seed)
    budgets = np.geomspace(c.min(), c.max(), n_budgets)

    t0 = time.perf_counter()
    res = budget_sweep(s, pc, y, c, budgets, with_shares=with_shares)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = budget_sweep(s, pc, y, c, budgets, with_shares=with_shares)
        times.append(time.perf_counter() - t0)
    jax_s = min(times)

    nb = n_budgets if baseline_budgets is None else min(baseline_budgets, n_budgets)
    sub = budgets[np.linspace(0, n_budgets - 1, nb).round().astype(int)]
    tracemalloc.start()
    t0 = time.perf_counter()
    err = 0.0
    for r in range(n_routers):
        lq, lc, _ = numpy_loop_sweep(s[r], pc[r], y, c, sub.astype(np.float32), with_shares)
        idx = np.searchsorted(budgets, sub)
        err = max(err, float(np.max(np.abs(res.quality[r, idx] - lq) / np.abs(lq))))
        err = max(err, float(np.max(np.abs(res.cost[r, idx] - lc) / np.abs(lc))))
    base_s = (time.perf_counter() - t0) * n_budgets / nb
    base_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    out: dict[str, Any] = {
        "ratio": base_s / jax_s,
        "baseline_s": base_s,
        "jaxroute_s": jax_s,
        "compile_s": compile_s,
        "baseline_peak_mem_mb": base_peak,
        "peak_mem_mb": None,
        "peak_rss_mb": None,
        "max_rel_err": err,
        "baseline_extrapolated": nb != n_budgets,
        "n_budgets": n_budgets,
        "n_prompts": n_prompts,
        "n_models": n_models,
        "n_routers": n_routers,
        "with_shares": with_shares,
        "backend": jax.default_backend(),
    }
    if memory_subprocess:
        code = (
            "import json,sys; from jaxroute._bench.sweep import _jax_peak_child as f; "
            f"print(json.dumps(f({n_budgets},{n_prompts},{n_models},{n_routers},{seed})))"
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        mem = json.loads(proc.stdout.strip().splitlines()[-1])
        out["peak_mem_mb"] = mem["maxrss_mb"] - mem["rss_before_mb"]
        out["peak_rss_mb"] = mem["maxrss_mb"]
    return out
