"""Sweeps with the prompt axis sharded over all devices, of one or several processes.

The sweeps' sums over prompts are int32 limb sums (``_numerics``): exact and independent
of order. So the prompt axis can be split over any number of devices and processes,
each device sweeping its own prompts, and a ``psum`` of the limb sums and share counts
over the mesh gives the one-device result bit for bit. This is the sweep of a
multi-process run (``jax.process_count() > 1``): every process calls it with the same
host arrays (SPMD), hands only its own prompts to its devices through
``jax.make_array_from_process_local_data``, and receives the whole curve.

Padding: the prompt axis is padded to a multiple of the device count with rows whose
true quality and cost are 0 and whose scores and predicted costs make model 0 the
choice of both rules at every budget and λ (score 1 for model 0 and 0 elsewhere,
predicted cost 0). They add nothing to the limb sums, and their share count is taken off
model 0 after the reduction.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxroute.routing._cores import _dense_one, _events_one, _lambda_bins_one, _limbs

AXIS = "prompts"


def _rows_of_this_process(mesh: Mesh, n: int) -> slice:
    """The rows of an ``[n, ...]`` array sharded over ``mesh`` held by this process."""
    spans = sorted(
        {
            (i[0].start or 0, n if i[0].stop is None else i[0].stop)
            for i in NamedSharding(mesh, P(AXIS)).addressable_devices_indices_map((n,)).values()
        }
    )
    lo, hi = spans[0][0], spans[-1][1]
    if sum(b - a for a, b in spans) != hi - lo:
        raise ValueError(f"this process's prompts are not contiguous in the mesh: {spans}")
    return slice(lo, hi)


@functools.lru_cache(maxsize=16)
def _compiled(mesh: Mesh, method: str, with_shares: bool, chunk: int, choose):
    if method == "events":
        core = functools.partial(_events_one, with_shares=with_shares)
    else:
        core = functools.partial(_dense_one, chunk=chunk, choose=choose)

    def local(scores, pred_costs, quality, cost, params, q_inv, c_inv):
        limbs = _limbs(quality, cost, q_inv, c_inv)
        sums, counts = jax.vmap(core, in_axes=(0, 0, None, 0))(scores, pred_costs, limbs, params)
        return jax.lax.psum(sums, AXIS), jax.lax.psum(counts, AXIS)

    rnm, nm = P(None, AXIS, None), P(AXIS, None)
    return jax.jit(
        jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(rnm, rnm, nm, nm, P(), P(), P()),
            out_specs=(P(), P()),
        )
    )


def prompt_sharded_sweep(
    scores: np.ndarray,
    pred_costs: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    params: np.ndarray,
    q_inv: np.float32,
    c_inv: np.float32,
    *,
    method: str = "events",
    with_shares: bool = True,
    chunk: int = 16,
    choose=None,
    devices=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Limb sums ``[R, B', 2·LIMBS]`` and counts ``[R, B', M]`` of a prompt-sharded sweep.

    Arguments as :func:`_cores.sweep_events` / :func:`_cores.sweep_dense` (``choose``:
    the rule's choice function, for ``method="dense"``), as host arrays
    (the same on every process); ``devices`` default to all processes' devices. The
    outputs are host arrays, identical on every process and to the one-device sweep.
    """
    if method not in ("events", "dense"):
        raise ValueError(f"method must be 'events' or 'dense', got {method!r}")
    mesh = Mesh(np.asarray(jax.devices() if devices is None else devices), (AXIS,))
    r, n, m = scores.shape
    pad = (-n) % mesh.size
    if pad:
        pad_scores = np.zeros((r, pad, m), np.float32)
        pad_scores[..., 0] = 1.0
        scores = np.concatenate([scores, pad_scores], axis=1)
        pred_costs = np.concatenate([pred_costs, np.zeros((r, pad, m), np.float32)], axis=1)
        quality = np.concatenate([quality, np.zeros((pad, m), np.float32)])
        cost = np.concatenate([cost, np.zeros((pad, m), np.float32)])
    rows = _rows_of_this_process(mesh, n + pad)

    def shard(x, spec):
        local = x[:, rows] if spec[0] is None else x[rows]
        return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), local, x.shape)

    rep = NamedSharding(mesh, P())
    args = (
        shard(scores, P(None, AXIS, None)),
        shard(pred_costs, P(None, AXIS, None)),
        shard(quality, P(AXIS, None)),
        shard(cost, P(AXIS, None)),
        jax.device_put(np.asarray(params, np.float32), rep),
        jax.device_put(np.asarray(q_inv, np.float32), rep),
        jax.device_put(np.asarray(c_inv, np.float32), rep),
    )
    sums, counts = _compiled(mesh, method, bool(with_shares), int(chunk), choose)(*args)
    sums = np.asarray(sums.addressable_data(0))
    counts = np.array(counts.addressable_data(0))
    if pad and (with_shares or method == "dense"):
        counts[..., 0] -= pad
    return sums, counts


@functools.lru_cache(maxsize=16)
def _compiled_lambda(mesh: Mesh, n_bins: int, with_shares: bool):
    core = functools.partial(_lambda_bins_one, n_bins=n_bins, with_shares=with_shares)

    def local(quality, cost, from_m, to_m, base_m, bins, q_inv, c_inv):
        limbs = _limbs(quality, cost, q_inv, c_inv)
        sums, counts = jax.vmap(core, in_axes=(None, 0, 0, 0, 0))(limbs, from_m, to_m, base_m, bins)
        return jax.lax.psum(sums, AXIS), jax.lax.psum(counts, AXIS)

    nm, rnk, rn = P(AXIS, None), P(None, AXIS, None), P(None, AXIS)
    return jax.jit(
        jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(nm, nm, rnk, rnk, rn, rnk, P(), P()),
            out_specs=(P(), P()),
        )
    )


def prompt_sharded_lambda_events(
    quality,
    cost,
    from_m,
    to_m,
    base_m,
    bins,
    q_inv,
    c_inv,
    *,
    n_bins,
    with_shares=True,
    devices=None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_cores.sweep_lambda_events` with the prompt axis sharded over all devices.

    Padding rows have no event (``bins = n_bins``), start on model 0 and have zero true
    quality and cost; their count is taken off model 0 after the reduction.
    """
    mesh = Mesh(np.asarray(jax.devices() if devices is None else devices), (AXIS,))
    r, n, k = from_m.shape
    m = quality.shape[1]
    pad = (-n) % mesh.size
    if pad:
        zeros_rk = np.zeros((r, pad, k), np.int32)
        quality = np.concatenate([quality, np.zeros((pad, m), np.float32)])
        cost = np.concatenate([cost, np.zeros((pad, m), np.float32)])
        from_m = np.concatenate([from_m, zeros_rk], axis=1)
        to_m = np.concatenate([to_m, zeros_rk], axis=1)
        base_m = np.concatenate([base_m, np.zeros((r, pad), np.int32)], axis=1)
        bins = np.concatenate([bins, zeros_rk + n_bins], axis=1)
    rows = _rows_of_this_process(mesh, n + pad)

    def shard(x, spec):
        local = x[rows] if spec[0] == AXIS else x[:, rows]
        return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), local, x.shape)

    rep = NamedSharding(mesh, P())
    args = (
        shard(np.asarray(quality, np.float32), P(AXIS, None)),
        shard(np.asarray(cost, np.float32), P(AXIS, None)),
        shard(np.asarray(from_m, np.int32), P(None, AXIS, None)),
        shard(np.asarray(to_m, np.int32), P(None, AXIS, None)),
        shard(np.asarray(base_m, np.int32), P(None, AXIS)),
        shard(np.asarray(bins, np.int32), P(None, AXIS, None)),
        jax.device_put(np.asarray(q_inv, np.float32), rep),
        jax.device_put(np.asarray(c_inv, np.float32), rep),
    )
    sums, counts = _compiled_lambda(mesh, int(n_bins), bool(with_shares))(*args)
    sums = np.asarray(sums.addressable_data(0))
    counts = np.array(counts.addressable_data(0))
    if pad and with_shares:
        counts[..., 0] -= pad
    return sums, counts
