"""The pieces of a rule's parameter where its choices are constant (calibration).

On a set of prompts the realised mean cost, share and quality of a decision rule are
piecewise constant in its parameter (docs/method.md §1):

- budget rule ``argmax_{m: ĉ ≤ B} s``: the choice of prompt ``i`` can only change where
  ``B`` reaches one of its predicted costs ``ĉ[i, m]``; the pieces are
  ``[u_k, u_{k+1})`` over the sorted distinct predicted costs ``u`` (plus ``B < u_0``).
- λ rule ``argmax_m s − λ·ĉ``: the choice of prompt ``i`` follows the upper envelope of
  its ``M`` lines in λ and changes at most ``M − 1`` times, at the envelope's
  breakpoints (λ ≥ 0, :func:`~jaxroute.routing.grids.lambda_grid`).

Each function returns one parameter inside every piece (the midpoint, geometric for
budgets, so the float32 rule at route time sees the same choices as the sweep).
"""

from __future__ import annotations

import numpy as np
from jax.typing import ArrayLike

from jaxroute.routing.grids import lambda_grid

MERGE_RTOL = 1e-6  # λ breakpoints closer than this (relative) are one breakpoint


def _midpoints(lo: np.ndarray, hi: np.ndarray, geometric: bool) -> np.ndarray:
    """float32 points in ``[lo, hi)`` (the midpoint, or ``lo`` when none fits)."""
    lo64, hi64 = lo.astype(np.float64), hi.astype(np.float64)
    if geometric:
        pos = (lo64 > 0) & (hi64 > 0)
        mid = np.where(pos, np.sqrt(np.where(pos, lo64 * hi64, 1.0)), 0.5 * (lo64 + hi64))
    else:
        mid = 0.5 * (lo64 + hi64)
    mid = mid.astype(np.float32)
    ok = (mid >= lo) & (mid < hi)
    return np.where(ok, mid, lo)


def lambda_breakpoints(scores: ArrayLike, pred_costs: ArrayLike) -> np.ndarray:
    """Sorted distinct λ > 0 where some prompt's λ-rule choice changes (float64).

    The breakpoints of :func:`~jaxroute.routing.grids.lambda_grid` (each prompt's upper
    envelope of ``s_m − λ·ĉ_m``), with twins closer than ``MERGE_RTOL`` merged: one
    breakpoint reached through different pairs of lines can differ by a rounding, and
    no float32 λ between such twins is resolved reliably by the rule.

    >>> lambda_breakpoints([[1.0, 0.5, 0.0]], [[3.0, 2.0, 1.0]]).tolist()
    [0.5]
    """
    grid = lambda_grid(scores, pred_costs)  # 0, half the first breakpoint, breakpoints
    b = np.unique(grid[2:]) if grid.size > 2 else np.zeros(0)
    keep = np.ones(b.shape, bool)
    keep[1:] = b[1:] > b[:-1] * (1 + MERGE_RTOL)
    return b[keep]


def budget_pieces(scores: ArrayLike, pred_costs: ArrayLike) -> np.ndarray:
    """One float32 budget inside each piece of the budget rule (any real budget)."""
    del scores  # the budget rule's pieces depend on the predicted costs only
    u = np.unique(np.asarray(pred_costs, np.float32).ravel())
    u = u[np.isfinite(u)]
    below = np.nextafter(u[0], np.float32(-np.inf)) if u[0] <= 0 else u[0] / np.float32(2)
    inner = _midpoints(u[:-1], u[1:], geometric=True)
    return np.unique(np.concatenate([[below], inner, u[-1:]]).astype(np.float32))


def lambda_pieces(scores: ArrayLike, pred_costs: ArrayLike) -> np.ndarray:
    """One float32 λ inside each piece of the λ rule (λ ≥ 0)."""
    b = lambda_breakpoints(scores, pred_costs).astype(np.float32)
    b = np.unique(b[b > 0])
    if b.size == 0:
        return np.zeros(1, np.float32)
    lo = np.concatenate([[np.float32(0)], b[:-1]])
    inner = _midpoints(lo, b, geometric=False)
    top = b[-1:] * np.float32(2)
    return np.unique(np.concatenate([[np.float32(0)], inner, top]).astype(np.float32))
