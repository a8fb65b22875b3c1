"""The jitted cores of the sweeps (the algorithm: :mod:`jaxroute.routing.sweep`).

Each core sweeps one router's ``[N, M]`` arrays; the ``sweep_*`` functions ``vmap`` it
over routers and ``jit`` it. Sums over prompts are int32 limbs (``_numerics``), so they
are exact and independent of order. ``TRACE_COUNTS`` counts traces (tests check
"compiles once").
"""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp

from jaxroute.routing._numerics import to_limbs

# Number of times each jitted core was traced (tests check "compiles once").
TRACE_COUNTS: collections.Counter = collections.Counter()


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


def _dense_one(scores, pred_costs, limbs, params, chunk, choose):
    """Direct evaluation of a rule for one router over ``[B]`` params, ``chunk`` at a time
    (``choose``: the rule's choice function, :data:`jaxroute.routing.rules.RULES`)."""
    n, m = scores.shape
    b = params.shape[0]
    n_chunks = -(-b // chunk)
    padded = jnp.concatenate([params, jnp.broadcast_to(params[-1:], (n_chunks * chunk - b,))])

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


@functools.partial(jax.jit, static_argnames=("chunk", "choose"))
def sweep_dense(scores, pred_costs, quality, cost, params, q_inv, c_inv, *, chunk=16, choose):
    """Jitted direct sweep (``lax.map`` over chunks of params), vectorised over routers.

    Same arguments and outputs as :func:`sweep_events`; ``choose`` is a rule's choice
    function (``budget_choice`` or ``lambda_choice``) and ``params`` holds its
    parameters (budgets or λ values), ``[R, B]``.
    """
    TRACE_COUNTS["dense"] += 1
    limbs = _limbs(quality, cost, q_inv, c_inv)
    fn = functools.partial(_dense_one, chunk=chunk, choose=choose)
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
