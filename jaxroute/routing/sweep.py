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

import collections
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.typing import ArrayLike

from jaxroute.routing._numerics import LIMBS, MAX_PROMPTS, from_limbs, scale_exponent, to_limbs
from jaxroute.routing.rules import budget_choice, lambda_choice

# Number of times each jitted core was traced (tests check "compiles once").
TRACE_COUNTS: collections.Counter = collections.Counter()


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


# --------------------------------------------------------------------------- grids


def orbit_budget_grid(pred_costs: ArrayLike, n_quantiles: int = 100) -> np.ndarray:
    """ORBIT's budget grid: unique predicted costs over the test set, reduced to quantiles.

    Args:
      pred_costs: ``[..., N, M]`` predicted costs of one router.
      n_quantiles: number of quantiles kept (``np.quantile`` linear interpolation at
        ``linspace(0, 1, n_quantiles)``) when there are more unique values than this.

    Returns:
      ``[B]`` float64 ascending budgets (``B ≤ n_quantiles``).

    >>> orbit_budget_grid([[1.0, 2.0], [2.0, 3.0]], n_quantiles=100).tolist()
    [1.0, 2.0, 3.0]
    """
    u = np.unique(np.asarray(pred_costs, np.float32).astype(np.float64).ravel())
    u = u[np.isfinite(u)]
    if u.size <= n_quantiles:
        return u
    return np.quantile(u, np.linspace(0.0, 1.0, n_quantiles))


def log_budget_grid(
    cost: ArrayLike,
    n_budgets: int = 100,
    *,
    low: float | None = None,
    high: float | None = None,
) -> np.ndarray:
    """Shared log-spaced grid from the cheapest to the dearest model's mean true cost.

    Args:
      cost: ``[N, M]`` true costs (the same grid then serves every router).
      n_budgets: grid size (any ``≥ 1``; one budget gives ``[high]``).
      low: override of the lower end (default ``min_m mean_i c[i, m]``, floored at 1e-12
        so the log grid exists when a model is free).
      high: override of the upper end (default ``max_m mean_i c[i, m]``).

    Returns:
      ``[n_budgets]`` float64 ascending budgets.
    """
    mean = np.asarray(cost, np.float64).mean(axis=0)
    lo = float(mean.min()) if low is None else float(low)
    hi = float(mean.max()) if high is None else float(high)
    lo = max(lo, 1e-12)
    if n_budgets == 1:
        return np.array([hi])
    return np.geomspace(lo, hi, n_budgets)


# --------------------------------------------------------------------------- cores


def _events_one(scores, pred_costs, limbs, budgets, with_shares):
    """Event sweep for one router: ``[N, M]`` arrays, ``[N, M, K]`` value limbs, ``[B]``."""
    n, m = scores.shape
    models = jnp.arange(m, dtype=jnp.int32)
    # For every model m at once, the best model among those feasible strictly before m,
    # i.e. (ĉ_k, k) < (ĉ_m, m). Scanning k upwards keeps the lowest index on score ties.
    has = jnp.zeros((n, m), bool)
    best_s = jnp.zeros((n, m), jnp.float32)
    best_k = jnp.zeros((n, m), jnp.int32)
    for k in range(m):
        pk, sk = pred_costs[:, k : k + 1], scores[:, k : k + 1]
        before = (pk < pred_costs) | ((pk == pred_costs) & (k < models[None, :]))
        take = before & (~has | (sk > best_s))
        best_s = jnp.where(take, sk, best_s)
        best_k = jnp.where(take, k, best_k)
        has = has | before
    fallback = jnp.argmin(pred_costs, axis=1).astype(jnp.int32)  # nothing feasible
    own = jnp.broadcast_to(models, (n, m))
    from_m = jnp.where(has, best_k, own)  # choice just before model m becomes feasible
    m_wins = ~has | (scores > best_s) | ((scores == best_s) & (models[None, :] < best_k))
    to_m = jnp.where(m_wins, own, best_k)  # choice once model m is feasible
    # Materialise: XLA:CPU would otherwise re-run the loop above inside every consumer.
    to_m, from_m = jax.lax.optimization_barrier((to_m, from_m))
    # Event (i, m): at B = ĉ[i, m] the choice of prompt i moves from from_m to to_m.
    delta = jnp.take_along_axis(limbs, to_m[..., None], 1) - jnp.take_along_axis(
        limbs, from_m[..., None], 1
    )  # [N, M, K] int32
    base = jnp.sum(jnp.take_along_axis(limbs, fallback[:, None, None], 1)[:, 0], axis=0)
    # Budgets sorted; event e counts for budget j iff t_e <= B_j iff bin(e) <= j.
    b = budgets.shape[0]
    border = jnp.argsort(budgets)
    sorted_b = budgets[border]
    bins = jnp.searchsorted(sorted_b, pred_costs.reshape(-1), side="left").astype(jnp.int32)
    per_bin = jax.ops.segment_sum(delta.reshape(n * m, -1), bins, num_segments=b + 1)
    sums = base[None, :] + jnp.cumsum(per_bin[:b], axis=0)  # sorted budgets
    if with_shares:  # +1 for the model taken, -1 for the model left (cancel if equal)
        ones = jnp.ones((n * m,), jnp.int32)
        n_seg = (b + 1) * m
        dc = jax.ops.segment_sum(ones, bins * m + to_m.reshape(-1), num_segments=n_seg)
        dc = dc - jax.ops.segment_sum(ones, bins * m + from_m.reshape(-1), num_segments=n_seg)
        dc = dc.reshape(b + 1, m)
        base_counts = jnp.bincount(fallback, length=m).astype(jnp.int32)
        counts = base_counts[None, :] + jnp.cumsum(dc[:b], axis=0)
    else:
        counts = jnp.zeros((b, m), jnp.int32)
    inv = jnp.argsort(border)
    return sums[inv], counts[inv]


def _dense_one(scores, pred_costs, limbs, params, chunk, rule):
    """Direct evaluation of a rule for one router over ``[B]`` params, ``chunk`` at a time."""
    n, m = scores.shape
    b = params.shape[0]
    n_chunks = -(-b // chunk)
    padded = jnp.concatenate([params, jnp.broadcast_to(params[-1:], (n_chunks * chunk - b,))])
    choose = budget_choice if rule == "budget" else lambda_choice

    def one_chunk(ps):
        choice = choose(
            jnp.broadcast_to(scores, (chunk, n, m)),
            jnp.broadcast_to(pred_costs, (chunk, n, m)),
            jnp.broadcast_to(ps[:, None], (chunk, n)),
        )  # [chunk, N]
        picked = jnp.take_along_axis(
            jnp.broadcast_to(limbs, (chunk,) + limbs.shape), choice[..., None, None], 2
        )[:, :, 0]  # [chunk, N, K]
        counts = jax.vmap(lambda ch: jnp.bincount(ch, length=m))(choice).astype(jnp.int32)
        return jnp.sum(picked, axis=1), counts

    out = jax.lax.map(one_chunk, padded.reshape(n_chunks, chunk))
    return tuple(o.reshape((n_chunks * chunk,) + o.shape[2:])[:b] for o in out)


_ENVELOPE_ROWS = 4096  # prompts per host chunk of the [N, M, M] crossing table


def _lambda_events(scores: np.ndarray, pred_costs: np.ndarray):
    """Events of the λ rule for one router, on the host in float64.

    For prompt ``i`` model ``m`` is chosen on ``[lo_m, hi_m)``: ``hi_m`` the smallest
    crossing ``(s_m − s_k)/(ĉ_m − ĉ_k)`` with a cheaper ``k``, ``lo_m`` the largest with a
    dearer one; a model beaten by an equal-cost one (higher score, or the same score and
    a lower index) is never chosen. Each crossing is computed once per pair, so one
    model's ``hi`` is bit for bit the next one's ``lo``. Float64 on float32 inputs: the
    differences are exact and the quotient is rounded once, so breakpoints of different
    prompts are ordered correctly unless they agree to ~1e-16.

    Returns:
      ``(t, from_m, to_m, base)``: ``[N, M−1]`` float64 event times (``+inf`` pads) and
      int32 models (the choice moves from ``from_m`` to ``to_m`` at ``t``), and ``[N]``
      the choice before the first event.
    """
    n, m = scores.shape
    idx = np.arange(m)
    lo = np.empty((n, m))
    on = np.empty((n, m), bool)
    for r0 in range(0, n, _ENVELOPE_ROWS):
        s = scores[r0 : r0 + _ENVELOPE_ROWS].astype(np.float64)
        p = pred_costs[r0 : r0 + _ENVELOPE_ROWS].astype(np.float64)
        sa, sb, pa, pb = s[:, :, None], s[:, None, :], p[:, :, None], p[:, None, :]
        same = pa == pb
        with np.errstate(invalid="ignore", divide="ignore"):
            cross = (sa - sb) / np.where(same, 1.0, pa - pb)
        hi = np.min(np.where(pb < pa, cross, np.inf), axis=2)
        lo_c = np.max(np.where(pb > pa, cross, -np.inf), axis=2)
        beaten = same & ((sb > sa) | ((sb == sa) & (idx[None, None, :] < idx[None, :, None])))
        lo[r0 : r0 + _ENVELOPE_ROWS] = lo_c
        on[r0 : r0 + _ENVELOPE_ROWS] = (lo_c < hi) & ~beaten.any(axis=2)
    key = np.where(on, lo, np.inf)
    order = np.argsort(key, axis=1, kind="stable").astype(np.int32)  # envelope first
    t = np.take_along_axis(key, order, 1)[:, 1:]
    return t, order[:, :-1], order[:, 1:], order[:, 0]


def _lambda_bins_one(limbs, from_m, to_m, base_m, bins, n_bins, with_shares):
    """Exact sums of the λ rule for one router from host-binned events."""
    n, k = from_m.shape
    m = limbs.shape[1]
    delta = jnp.take_along_axis(limbs, to_m[..., None], 1) - jnp.take_along_axis(
        limbs, from_m[..., None], 1
    )  # [N, M-1, K]
    base = jnp.sum(jnp.take_along_axis(limbs, base_m[:, None, None], 1)[:, 0], axis=0)
    flat = bins.reshape(-1)
    per_bin = jax.ops.segment_sum(delta.reshape(n * k, -1), flat, num_segments=n_bins + 1)
    sums = base[None, :] + jnp.cumsum(per_bin[:n_bins], axis=0)
    if with_shares:
        ones = jnp.ones((n * k,), jnp.int32)
        n_seg = (n_bins + 1) * m
        dc = jax.ops.segment_sum(ones, flat * m + to_m.reshape(-1), num_segments=n_seg)
        dc = dc - jax.ops.segment_sum(ones, flat * m + from_m.reshape(-1), num_segments=n_seg)
        base_counts = jnp.bincount(base_m, length=m).astype(jnp.int32)
        counts = base_counts[None, :] + jnp.cumsum(dc.reshape(n_bins + 1, m)[:n_bins], axis=0)
    else:
        counts = jnp.zeros((n_bins, m), jnp.int32)
    return sums, counts


def lambda_grid(scores: ArrayLike, pred_costs: ArrayLike) -> np.ndarray:
    """Every breakpoint of one router's λ rule, with 0: a λ sweep over this grid holds
    every operating point the rule reaches for ``λ ≥ 0`` (exact, nothing interpolated).

    Args:
      scores: ``[N, M]`` router scores.
      pred_costs: ``[N, M]`` predicted costs.

    Returns:
      ``[B]`` ascending float64 λ values: 0, half the first breakpoint, and every
      per-prompt envelope breakpoint above 0 (at most ``N·(M−1) + 2`` values).

    >>> lambda_grid([[0.9, 0.5]], [[1.0, 0.1]]).round(6).tolist()  # (0.9-0.5)/(1.0-0.1)
    [0.0, 0.222222, 0.444444]
    """
    s = np.asarray(scores, np.float32)
    pc = np.asarray(pred_costs, np.float32)
    if s.ndim != 2 or s.shape != pc.shape:
        raise ValueError(f"scores {s.shape} and pred_costs {pc.shape} must be one [N, M]")
    t = _lambda_events(s, pc)[0].ravel()
    t = np.unique(t[np.isfinite(t) & (t > 0)])
    # λ = 0 itself (ties to the lowest index) and a λ inside (0, first breakpoint): the
    # two differ when top scores tie between models of different predicted cost.
    first = t[:1] / 2 if t.size else np.ones(1)
    return np.concatenate([[0.0], first, t])


def _limbs(quality, cost, q_inv, c_inv):
    return jnp.concatenate([to_limbs(quality, q_inv), to_limbs(cost, c_inv)], axis=-1)


@functools.partial(jax.jit, static_argnames=("with_shares",))
def sweep_events(scores, pred_costs, quality, cost, budgets, q_inv, c_inv, *, with_shares=True):
    """Jitted event sweep of the budget rule, vectorised over routers.

    Args:
      scores: ``[R, N, M]`` float32 router scores.
      pred_costs: ``[R, N, M]`` float32 predicted costs.
      quality: ``[N, M]`` float32 true quality.
      cost: ``[N, M]`` float32 true cost.
      budgets: ``[R, B]`` float32 budgets (any order).
      q_inv: float32 scalar ``2**-e`` with ``max|quality| ≤ 2**e``
        (``_numerics.scale_exponent``).
      c_inv: float32 scalar, the same for cost.
      with_shares: also count the prompts sent to each model.

    Returns:
      ``(sums, counts)``: ``[R, B, 2·LIMBS]`` int32 limb sums over prompts of true quality
      (first ``LIMBS``) and cost (last ``LIMBS``), and ``[R, B, M]`` int32 counts.
    """
    TRACE_COUNTS["events"] += 1
    limbs = _limbs(quality, cost, q_inv, c_inv)
    fn = functools.partial(_events_one, with_shares=with_shares)
    return jax.vmap(fn, in_axes=(0, 0, None, 0))(scores, pred_costs, limbs, budgets)


@functools.partial(jax.jit, static_argnames=("chunk", "rule"))
def sweep_dense(
    scores, pred_costs, quality, cost, params, q_inv, c_inv, *, chunk=16, rule="budget"
):
    """Jitted direct sweep (``lax.map`` over chunks of params), vectorised over routers.

    Same arguments and outputs as :func:`sweep_events`; ``rule`` is ``"budget"`` or
    ``"lambda"`` and ``params`` holds budgets or λ values, ``[R, B]``.
    """
    TRACE_COUNTS["dense"] += 1
    limbs = _limbs(quality, cost, q_inv, c_inv)
    fn = functools.partial(_dense_one, chunk=chunk, rule=rule)
    return jax.vmap(fn, in_axes=(0, 0, None, 0))(scores, pred_costs, limbs, params)


@functools.partial(jax.jit, static_argnames=("n_bins", "with_shares"))
def sweep_lambda_events(
    quality, cost, from_m, to_m, base_m, bins, q_inv, c_inv, *, n_bins, with_shares=True
):
    """Jitted λ-rule sums from host events (:func:`lambda_sweep` prepares them), vectorised
    over routers.

    Args:
      quality: ``[N, M]`` float32 true quality.
      cost: ``[N, M]`` float32 true cost.
      from_m: ``[R, N, M−1]`` int32, the model each event leaves.
      to_m: ``[R, N, M−1]`` int32, the model it takes.
      base_m: ``[R, N]`` int32, the choice before any event (λ below every breakpoint).
      bins: ``[R, N, M−1]`` int32, the first (sorted) λ index each event counts for
        (``n_bins``: never).
      q_inv: float32 scalar ``2**-e`` with ``max|quality| ≤ 2**e``.
      c_inv: float32 scalar, the same for cost.
      n_bins: number of (sorted) λ values.
      with_shares: also count the prompts sent to each model.

    Returns:
      ``(sums, counts)``: ``[R, n_bins, 2·LIMBS]`` int32 limb sums and ``[R, n_bins, M]``
      counts, in sorted-λ order.
    """
    TRACE_COUNTS["lambda_events"] += 1
    limbs = _limbs(quality, cost, q_inv, c_inv)
    fn = functools.partial(_lambda_bins_one, n_bins=n_bins, with_shares=with_shares)
    return jax.vmap(fn, in_axes=(None, 0, 0, 0, 0))(limbs, from_m, to_m, base_m, bins)


# --------------------------------------------------------------------------- wrappers


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


def _sweep_prompts(single, s, pc, y, c, params, devices, method, with_shares, chunk, rule="budget"):
    from jaxroute.routing._sharded import prompt_sharded_sweep

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
        rule=rule,
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
        return _sweep_prompts(single, s, pc, y, c, params, devices, method, with_shares, chunk)
    args, r, b = _place(shard, devices, s, pc, y, c, params)
    q_exp, c_exp = scale_exponent(y), scale_exponent(c)
    args = args + (np.float32(2.0**-q_exp), np.float32(2.0**-c_exp))
    if method == "events":
        out = sweep_events(*args, with_shares=with_shares)
    elif method == "dense":
        out = sweep_dense(*args, chunk=chunk, rule="budget")
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
    :func:`~jaxroute.routing.rules.lambda_choice` directly (ties to the lowest index).
    Sweep over :func:`lambda_grid` for every operating point.
    """
    single, s, pc, y, c, params = _prepare(scores, pred_costs, quality, cost, lambdas)
    q_exp, c_exp = scale_exponent(y), scale_exponent(c)
    inv = (np.float32(2.0**-q_exp), np.float32(2.0**-c_exp))
    prompts = _prompt_sharded(shard)
    if method == "dense" and prompts:
        return _sweep_prompts(single, s, pc, y, c, params, devices, "dense", True, chunk, "lambda")
    if method == "dense":
        args, r, b = _place(shard, devices, s, pc, y, c, params)
        out = sweep_dense(*args, *inv, chunk=chunk, rule="lambda")
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
    events = [_lambda_events(s[k], pc[k]) for k in range(r)]
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
        from jaxroute.routing._sharded import prompt_sharded_lambda_events

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
