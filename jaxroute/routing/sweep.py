"""Budget and λ sweeps: one jit-compiled function for many budgets and routers at once.

The budget sweep (``method="events"``, the default) never builds a
``[budgets, prompts, models]`` array. For one prompt the budget rule's choice is a step
function of ``B`` that can only change where ``B`` reaches one of the prompt's ``M``
predicted costs. For each model ``m`` the choice once ``m`` becomes feasible is the
argmax of the score over the models that are feasible no later than ``m`` (a prefix
argmax in predicted-cost order, ties by index, computed with an ``[N, M, M]`` mask, no
sort); this gives one event per (prompt, model): at ``B = ĉ[i, m]`` the choice moves
from ``from`` to ``to``. Each event is binned with ``searchsorted`` to the first budget
that includes it (``ĉ ≤ B``), per-bin deltas are scatter-added and a cumulative sum
over the sorted budgets gives the exact operating point at every budget.
Time ``O(N·M² + N·M·log B)``, memory ``O(N·M² + B·M)``: nothing of size ``B·N``.

Numerics (jax_enable_x64 stays off): true quality and cost are split into int32 limbs
(``_numerics``), so every sum over prompts is an exact integer sum (truncation below
``2**-45`` of the largest value), independent of order and of the device count; share
counts are int32. The jitted functions return limb sums; the public wrappers convert
them to float64 on the host and divide by ``N``, so means agree with a float64 loop to
about 1e-12 relative.

Compilation: the budget axis is padded to a power of two (≥ 8) with its last value, so
grids of different lengths (ORBIT's differ per router) share one compiled program;
``TRACE_COUNTS`` counts traces.

Sharding: ``shard="budget"`` or ``"router"`` places that axis on a 1-D ``Mesh`` with a
``NamedSharding`` (the rest replicated) and lets ``jit`` partition the same program;
integer sums make the result bit-identical to one device.

``method="dense"`` evaluates the rule directly on chunks of budgets with ``lax.map``
(``[chunk, N, M]`` at a time, same exact sums).

The λ sweep (``method="events"``, the default) works the same way. For one prompt,
``s_m − λ·ĉ_m`` is a line in λ and the rule's choice follows the upper envelope of the
``M`` lines: model ``m`` is chosen on ``[lo_m, hi_m)``, where ``hi_m`` is the smallest
crossing ``(s_m − s_k)/(ĉ_m − ĉ_k)`` with a cheaper ``k`` and ``lo_m`` the largest with
a dearer one (an equal-cost model with a higher score, or the same score and a lower
index, removes ``m``). The envelope models sorted by ``lo`` give at most ``M − 1``
events per prompt (choice moves from one to the next); they are binned and summed as in
the budget sweep, so memory stays ``O(N·M² + B·M)``. At a λ exactly on a breakpoint the
sweep reports the right limit (the operating point on ``[λ, next breakpoint)``), except
at λ = 0, which is the rule itself (the best score, lowest index on ties, like the
budget rule at the largest budget); :func:`lambda_grid` lists every breakpoint, so a
sweep over it holds every operating point the rule can reach.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxroute.routing._cores import (
    TRACE_COUNTS,  # noqa: F401 (tests count the traces here)
    sweep_dense,
    sweep_events,
    sweep_lambda_events,
)
from jaxroute.routing._numerics import LIMBS, MAX_PROMPTS, from_limbs, scale_exponent
from jaxroute.routing._sharded import prompt_sharded_lambda_events, prompt_sharded_sweep
from jaxroute.routing.choice import budget_choice, lambda_choice
from jaxroute.routing.grids import (  # noqa: F401 (re-exported: the grids of these sweeps)
    lambda_events,
    lambda_grid,
    log_budget_grid,
    orbit_budget_grid,
)


class SweepResult(NamedTuple):
    """Operating points of a sweep (host float64 arrays).

    Attributes:
      budget: ``[..., B]`` budgets (or λ values) as used (float32 values).
      quality: ``[..., B]`` mean true quality ``P(B)``.
      cost: ``[..., B]`` mean true cost ``C(B)``.
      shares: ``[..., B, M]`` share of prompts routed to each model.
    """

    budget: np.ndarray
    quality: np.ndarray
    cost: np.ndarray
    shares: np.ndarray


def _prepare(scores, pred_costs, quality, cost, params):
    scores = np.asarray(scores, np.float32)
    pred_costs = np.asarray(pred_costs, np.float32)
    single = scores.ndim == 2
    if single:
        scores, pred_costs = scores[None], pred_costs[None]
    if scores.shape != pred_costs.shape or scores.ndim != 3:
        raise ValueError(f"scores {scores.shape} and pred_costs {pred_costs.shape} differ")
    quality = np.asarray(quality, np.float32)
    cost = np.asarray(cost, np.float32)
    if quality.shape != scores.shape[1:] or cost.shape != scores.shape[1:]:
        raise ValueError(
            f"quality {quality.shape} / cost {cost.shape} must be {scores.shape[1:]} ([N, M])"
        )
    if quality.shape[0] > MAX_PROMPTS:
        raise ValueError(f"at most {MAX_PROMPTS} prompts per sweep, got {quality.shape[0]}")
    r = scores.shape[0]
    params = np.atleast_1d(np.asarray(params, np.float32))
    if params.ndim == 1:
        params = np.broadcast_to(params, (r, params.shape[0]))
    if params.shape[0] != r or params.ndim != 2:
        raise ValueError(f"budgets must be [B] or [R={r}, B], got {params.shape}")
    return single, scores, pred_costs, quality, cost, np.ascontiguousarray(params)


def _bucket(params):
    """Pads the budget axis to a power of two (≥ 8) with its last value, so grids of
    different lengths (ORBIT's vary by router) reuse one compiled sweep."""
    b = params.shape[1]
    size = max(8, 1 << (b - 1).bit_length())
    return np.concatenate([params, np.repeat(params[:, -1:], size - b, axis=1)], axis=1)


def _place(shard, devices, scores, pred_costs, quality, cost, params):
    """Pads and places the inputs on a 1-D mesh; returns arrays and the unpadded sizes."""
    r, b = params.shape
    params = _bucket(params)
    if shard is None:
        return (scores, pred_costs, quality, cost, params), r, b
    devices = list(jax.devices() if devices is None else devices)
    nd = len(devices)
    mesh = Mesh(np.asarray(devices), ("d",))
    rep = NamedSharding(mesh, P())
    if shard == "budget":
        pad = (-params.shape[1]) % nd
        params = np.concatenate([params, np.repeat(params[:, -1:], pad, axis=1)], axis=1)
        spec_rnm, spec_rb = rep, NamedSharding(mesh, P(None, "d"))
    elif shard == "router":
        pad = (-r) % nd
        scores = np.concatenate([scores, np.repeat(scores[-1:], pad, axis=0)])
        pred_costs = np.concatenate([pred_costs, np.repeat(pred_costs[-1:], pad, axis=0)])
        params = np.concatenate([params, np.repeat(params[-1:], pad, axis=0)])
        spec_rnm, spec_rb = NamedSharding(mesh, P("d")), NamedSharding(mesh, P("d"))
    else:
        raise ValueError(f"shard must be None, 'budget' or 'router', got {shard!r}")
    placed = (
        jax.device_put(scores, spec_rnm),
        jax.device_put(pred_costs, spec_rnm),
        jax.device_put(quality, rep),
        jax.device_put(cost, rep),
        jax.device_put(params, spec_rb),
    )
    return placed, r, b


def _finish(single, params, n, out, r, b, q_exp, c_exp):
    sums, counts = (np.asarray(o)[:r, :b] for o in out)
    q = from_limbs(sums[..., :LIMBS], q_exp) / n
    c = from_limbs(sums[..., LIMBS:], c_exp) / n
    shares = counts.astype(np.float64) / n
    budget = params.astype(np.float64)
    if single:
        return SweepResult(budget[0], q[0], c[0], shares[0])
    return SweepResult(budget, q, c, shares)


def _prompt_sharded(shard) -> bool:
    """``shard="prompt"``, and the default of a multi-process run (every process calls the
    sweep with the same arrays; each feeds only its own prompts)."""
    return shard == "prompt" or (shard is None and jax.process_count() > 1)


def _sweep_prompts(single, s, pc, y, c, params, devices, method, with_shares, chunk, choose):
    r, b = params.shape
    q_exp, c_exp = scale_exponent(y), scale_exponent(c)
    inv = (np.float32(2.0**-q_exp), np.float32(2.0**-c_exp))
    out = prompt_sharded_sweep(
        s,
        pc,
        y,
        c,
        _bucket(params),
        *inv,
        method=method,
        with_shares=with_shares,
        chunk=chunk,
        choose=choose,
        devices=devices,
    )
    return _finish(single, params, y.shape[0], out, r, b, q_exp, c_exp)


def budget_sweep(
    scores: ArrayLike,
    pred_costs: ArrayLike,
    quality: ArrayLike,
    cost: ArrayLike,
    budgets: ArrayLike,
    *,
    method: str = "events",
    shard: str | None = None,
    devices: list | None = None,
    with_shares: bool = True,
    chunk: int = 16,
) -> SweepResult:
    """Evaluates the budget rule at many budgets for one or several routers.

    Args:
      scores: ``[N, M]`` or ``[R, N, M]`` router scores.
      pred_costs: same shape, predicted costs.
      quality: ``[N, M]`` true quality.
      cost: ``[N, M]`` true cost.
      budgets: ``[B]`` shared or ``[R, B]`` per router.
      method: ``"events"`` (exact breakpoints, memory independent of ``B``) or ``"dense"``
        (direct evaluation, ``chunk`` budgets at a time).
      shard: ``None``, ``"budget"`` or ``"router"``: shard that axis over ``devices``
        (default all devices) with a ``NamedSharding`` on a 1-D mesh; the axis is padded to
        a multiple of the device count and the padding dropped. ``"prompt"`` (the default
        when several JAX processes run): prompts split over the devices of all processes
        and the exact limb sums reduced across them (``routing._sharded``).
      devices: devices of the mesh.
      with_shares: compute per-model shares (zeros otherwise).
      chunk: budgets per step for ``method="dense"``.

    Returns:
      :class:`SweepResult` with ``[B]`` / ``[B, M]`` arrays for ``[N, M]`` inputs, and
      ``[R, B]`` / ``[R, B, M]`` for ``[R, N, M]`` inputs.
    """
    single, s, pc, y, c, params = _prepare(scores, pred_costs, quality, cost, budgets)
    if _prompt_sharded(shard):
        return _sweep_prompts(
            single, s, pc, y, c, params, devices, method, with_shares, chunk, budget_choice
        )
    args, r, b = _place(shard, devices, s, pc, y, c, params)
    q_exp, c_exp = scale_exponent(y), scale_exponent(c)
    args = args + (np.float32(2.0**-q_exp), np.float32(2.0**-c_exp))
    if method == "events":
        out = sweep_events(*args, with_shares=with_shares)
    elif method == "dense":
        out = sweep_dense(*args, chunk=chunk, choose=budget_choice)
    else:
        raise ValueError(f"method must be 'events' or 'dense', got {method!r}")
    return _finish(single, params, y.shape[0], out, r, b, q_exp, c_exp)


def lambda_sweep(
    scores: ArrayLike,
    pred_costs: ArrayLike,
    quality: ArrayLike,
    cost: ArrayLike,
    lambdas: ArrayLike,
    *,
    method: str = "events",
    shard: str | None = None,
    devices: list | None = None,
    with_shares: bool = True,
    chunk: int = 16,
) -> SweepResult:
    """Evaluates the λ rule ``argmax_m s − λ·ĉ`` at many λ for one or several routers.

    Args and returns as :func:`budget_sweep`, with ``lambdas`` (``[B]`` or ``[R, B]``) in
    place of budgets; ``SweepResult.budget`` holds the λ values. ``method="events"``
    (default, exact, memory independent of ``B``) reports the right limit at a λ > 0 that
    is exactly a breakpoint (ties go to the model chosen just above it, i.e. the cheaper
    one) and the rule itself at λ = 0; ``"dense"`` applies
    :func:`~jaxroute.routing.choice.lambda_choice` directly (ties to the lowest index).
    Sweep over :func:`lambda_grid` for every operating point.
    """
    single, s, pc, y, c, params = _prepare(scores, pred_costs, quality, cost, lambdas)
    q_exp, c_exp = scale_exponent(y), scale_exponent(c)
    inv = (np.float32(2.0**-q_exp), np.float32(2.0**-c_exp))
    prompts = _prompt_sharded(shard)
    if method == "dense" and prompts:
        return _sweep_prompts(
            single, s, pc, y, c, params, devices, "dense", True, chunk, lambda_choice
        )
    if method == "dense":
        args, r, b = _place(shard, devices, s, pc, y, c, params)
        out = sweep_dense(*args, *inv, chunk=chunk, choose=lambda_choice)
        return _finish(single, params, y.shape[0], out, r, b, q_exp, c_exp)
    if method != "events":
        raise ValueError(f"method must be 'events' or 'dense', got {method!r}")
    if shard is not None and not prompts:
        raise ValueError("the λ events sweep shards prompts only (shard='prompt')")
    r, b = params.shape
    params = np.broadcast_to(np.asarray(lambdas, np.float64), params.shape)  # not rounded
    padded = _bucket(params)
    nb = padded.shape[1]
    # Event times and λ values compared in float64 on the host; the device sums exactly.
    lam64 = padded.astype(np.float64)
    border = np.argsort(lam64, axis=1, kind="stable")
    events = [lambda_events(s[k], pc[k]) for k in range(r)]
    bins = np.stack(
        [
            np.where(
                np.isfinite(t), np.searchsorted(lam64[k, border[k]], t, side="left"), nb
            ).astype(np.int32)
            for k, (t, _, _, _) in enumerate(events)
        ]
    )
    from_m, to_m, base_m = (np.stack([e[j] for e in events]) for j in (1, 2, 3))
    if prompts:  # host events of every prompt; each process sums its own on its devices
        sums, counts = prompt_sharded_lambda_events(
            y,
            c,
            from_m,
            to_m,
            base_m,
            bins,
            *inv,
            n_bins=nb,
            with_shares=with_shares,
            devices=devices,
        )
    else:
        sums, counts = sweep_lambda_events(
            y, c, from_m, to_m, base_m, bins, *inv, n_bins=nb, with_shares=with_shares
        )
    inv_order = np.argsort(border, axis=1)
    sums = np.take_along_axis(np.asarray(sums), inv_order[:, :, None], 1)
    counts = np.take_along_axis(np.asarray(counts), inv_order[:, :, None], 1)
    res = _finish(False, params, y.shape[0], (sums, counts), r, b, q_exp, c_exp)
    zero = params[:, :b] == 0.0
    if zero.any():  # λ = 0 is the rule itself, not a right limit: ties to the lowest index
        rows = np.arange(y.shape[0])
        for k in np.flatnonzero(zero.any(axis=1)):
            ch = np.argmax(s[k], axis=1)
            res.quality[k, zero[k]] = y[rows, ch].astype(np.float64).mean()
            res.cost[k, zero[k]] = c[rows, ch].astype(np.float64).mean()
            res.shares[k, zero[k]] = np.bincount(ch, minlength=y.shape[1]) / y.shape[0]
    return SweepResult(*(a[0] for a in res)) if single else res
