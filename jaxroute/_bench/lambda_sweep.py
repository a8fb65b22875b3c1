"""Benchmark: the jitted λ event sweep against a NumPy loop over every breakpoint.

Both sides produce every operating point of the λ rule (:func:`~jaxroute.routing.grids.lambda_grid`
gives the breakpoints); the loop evaluates ``argmax_m s − λ·ĉ`` once per breakpoint.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from jaxroute._bench.sweep import synthetic_problem
from jaxroute.routing.grids import lambda_grid
from jaxroute.routing.sweep import lambda_sweep


def numpy_lambda_loop(scores, pred_costs, quality, cost, lams) -> tuple[np.ndarray, np.ndarray]:
    """The straightforward approach: for each λ, argmax of ``s − λ·ĉ`` (float64), gather,
    mean."""
    rows = np.arange(quality.shape[0])
    scores, pred_costs = scores.astype(np.float64), pred_costs.astype(np.float64)
    q = np.empty(len(lams))
    c = np.empty(len(lams))
    for j, lam in enumerate(lams):
        choice = np.argmax(scores - lam * pred_costs, axis=1)
        q[j] = quality[rows, choice].astype(np.float64).mean()
        c[j] = cost[rows, choice].astype(np.float64).mean()
    return q, c


def bench_lambda_sweep(
    n_prompts: int = 36000,
    n_models: int = 11,
    seed: int = 0,
    *,
    repeats: int = 3,
    baseline_lambdas: int | None = 2000,
) -> dict[str, Any]:
    """Times the λ sweep over every breakpoint (jitted events) against the NumPy loop.

    Args:
      n_prompts: prompts.
      n_models: models.
      seed: data seed.
      repeats: timed repetitions of the jax sweep (best is reported).
      baseline_lambdas: time the loop on this many of the breakpoints (midpoints between
        them, so no ties) and scale linearly to all of them; ``None``: all.

    Returns:
      dict: ``ratio`` (baseline_s / jaxroute_s), ``baseline_s``, ``jaxroute_s``
      (grid + sweep), ``compile_s``, ``n_lambdas``, ``max_rel_err`` and ``what``.
    """
    s, pc, y, c = synthetic_problem(n_prompts, n_models, 1, seed)
    s, pc = s[0], pc[0]
    t0 = time.perf_counter()
    res = lambda_sweep(s, pc, y, c, lambda_grid(s, pc))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        grid = lambda_grid(s, pc)
        res = lambda_sweep(s, pc, y, c, grid)
        times.append(time.perf_counter() - t0)
    jax_s = min(times)
    b = len(grid)
    nb = b - 1 if baseline_lambdas is None else min(baseline_lambdas, b - 1)
    idx = np.linspace(0, b - 2, nb).round().astype(int)
    mids = (grid[idx] + grid[idx + 1]) / 2
    t0 = time.perf_counter()
    lq, lc = numpy_lambda_loop(s, pc, y, c, mids)
    base_s = (time.perf_counter() - t0) * (b / nb)
    err = float(
        max(
            np.max(np.abs(res.quality[idx] - lq) / np.abs(lq)),
            np.max(np.abs(res.cost[idx] - lc) / np.abs(lc)),
        )
    )
    return {
        "ratio": base_s / jax_s,
        "baseline_s": base_s,
        "jaxroute_s": jax_s,
        "compile_s": compile_s,
        "n_lambdas": int(b),
        "n_prompts": n_prompts,
        "n_models": n_models,
        "max_rel_err": err,
        "what": f"λ sweep over all {b} breakpoints, {n_prompts} prompts x {n_models} models: "
        "jitted events vs NumPy loop (loop timed on "
        f"{nb} λ, scaled)",
    }
