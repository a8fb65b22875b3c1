"""Multi-process runs on JAX's own multi-controller runtime (``jax.distributed``).

Every process runs the same program (SPMD). Rules that keep it right:

- **Start-up** (:func:`initialize`): the coordinator address, process count and id come
  from arguments, else from ``JAX_COORDINATOR_ADDRESS`` (read by JAX itself),
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (read here: JAX leaves them to its
  cluster auto-detection), else from that auto-detection (Cloud TPU, SLURM, Open MPI,
  Kubernetes). On CPU, cross-process collectives use gloo.
- **Mesh**: one 1-D ``("data",)`` mesh over ``jax.devices()``, all processes' devices.
- **Data parallelism**: the batch axis is sharded over the mesh; process ``p`` gathers
  and transfers only its columns of every batch (:func:`epoch_batches`, with
  ``jax.make_array_from_process_local_data``). No device holds the training table.
  Every process still reads the (small) table and computes the same split, so the
  batch order is the one-process order.
- **Train state**: the K-router vmapped state (params, optimiser state, step, rng) is
  *replicated* on every device of the mesh (``PartitionSpec()``). The K axis is never
  sharded: K is small (seeds, loss variants) and every router sees the whole global
  batch. ``jit`` turns the mean over the sharded batch into a cross-process all-reduce,
  so the step is the one-process step up to float32 summation order.
- **Checkpoints**: orbax's multi-process path: every process calls save and restore
  with the same global arrays; orbax coordinates the processes (the primary writes the
  metadata, each process its own shard files).
  Restores name their target sharding (:func:`restore_target`), so any process count
  reads a checkpoint written by any other.
- **Sweeps**: prompts sharded over the global mesh, exact limb sums ``psum``-reduced
  (``routing/_sharded.py``); the curve is the one-device curve bit for bit.
- **Writes**: config.json, metrics.jsonl, run_info.json, the report and figures only on
  process 0 (:func:`is_main`); every process logs the same headline.
- **Host values**: :func:`to_host` reads replicated global arrays back as NumPy.
  Build global arrays from host (NumPy) values: ``jax.device_put`` of a *committed*
  single-device ``jax.Array`` onto a sharding that spans other processes makes a broken
  array on jax 0.10.2 (``addressable_shards`` raises "An argument array had 2
  shard(s)"), so :func:`replicate` goes through NumPy.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxroute.train import _trainer as T

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
DATA_AXIS = "data"


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout_s: int = 300,
) -> None:
    """Joins the multi-process JAX runtime (once; later calls are no-ops).

    Args:
      coordinator_address: ``host:port`` of process 0's coordinator service (default
        ``$JAX_COORDINATOR_ADDRESS``).
      num_processes: number of processes (default ``$JAX_NUM_PROCESSES``).
      process_id: this process, ``0 ≤ id < num_processes`` (default ``$JAX_PROCESS_ID``).
      timeout_s: how long to wait for every process to connect.

    Anything still unset is left to JAX's cluster auto-detection (TPU pod slices, SLURM,
    Open MPI, Kubernetes), which fails with JAX's own message outside such a cluster.
    """
    if jax.distributed.is_initialized():
        return
    address = coordinator_address or os.environ.get(ENV_ADDRESS) or None
    num = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    pid = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    if num is not None and pid is not None and not 0 <= pid < num:
        raise ValueError(f"process id {pid} is not in [0, {num}) (JAX_PROCESS_ID / --process_id)")
    # CPU cross-process collectives (gloo is the default of jax 0.10; set so that an
    # older default of "none" cannot silently leave them off).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    logging.info(
        "jax.distributed.initialize(coordinator_address=%s, num_processes=%s, process_id=%s)",
        address,
        num,
        pid,
    )
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=num,
        process_id=pid,
        initialization_timeout=int(timeout_s),
    )


def multi_process() -> bool:
    """True when this program is one of several JAX processes."""
    return jax.process_count() > 1


def is_main() -> bool:
    """True on process 0, the only one that writes files outside checkpoints."""
    return jax.process_index() == 0


def global_mesh(devices=None) -> Mesh:
    """A 1-D ``("data",)`` mesh over all processes' devices (or ``devices``)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Host or local values as global arrays replicated on every device of ``mesh``.

    Every process must pass the same values (they are not compared).
    """
    rep = NamedSharding(mesh, P())

    def one(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            raise TypeError("replicate: pass raw key data, not typed PRNG keys")
        return jax.device_put(np.asarray(x), rep)

    return jax.tree.map(one, tree)


def to_host(tree: Any) -> Any:
    """NumPy values of (global or local) arrays; sharded global ones are all-gathered."""

    def one(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def local_columns(mesh: Mesh, global_shape: tuple[int, ...], axis: int) -> slice:
    """The contiguous range of ``axis`` that this process's devices hold when an array of
    ``global_shape`` is sharded along ``axis`` over ``mesh``'s data axis."""
    spec = [None] * len(global_shape)
    spec[axis] = DATA_AXIS
    sharding = NamedSharding(mesh, P(*spec))
    parts = sorted(
        {
            (idx[axis].start or 0, global_shape[axis] if idx[axis].stop is None else idx[axis].stop)
            for idx in sharding.addressable_devices_indices_map(global_shape).values()
        }
    )
    lo, hi = parts[0][0], parts[-1][1]
    if sum(b - a for a, b in parts) != hi - lo:
        raise ValueError(f"this process's shard of axis {axis} is not contiguous: {parts}")
    return slice(lo, hi)


def epoch_batches(
    data: dict[str, np.ndarray], idx: np.ndarray, valid: np.ndarray, mesh: Mesh
) -> dict[str, jax.Array]:
    """One epoch's batches as global arrays ``[K, S, B, ...]`` sharded on the batch axis.

    Args:
      data: host arrays ``[K, N, ...]`` (``x``, ``quality``, ``cost``) of the K routers'
        training sets.
      idx: ``[K, S, B]`` row indices of every batch (:func:`_trainer.epoch_indices`).
      valid: ``[K, S, B]`` mask of real (not padding) rows.
      mesh: the global data mesh; ``B`` must be divisible by its size.

    Returns:
      ``x``, ``quality``, ``cost`` ``[K, S, B, ...]`` and ``mask`` ``[K, S, B]``. This
      process gathers only its columns ``B[p·B/P : (p+1)·B/P]`` (for one device per
      process) of every batch and hands them to
      ``jax.make_array_from_process_local_data``.
    """
    k, s, b = idx.shape
    if b % mesh.size:
        raise ValueError(f"batch size {b} is not divisible by the {mesh.size} devices of the mesh")
    cols = local_columns(mesh, (k, s, b), axis=2)
    local_idx = idx[:, :, cols]
    rows = np.arange(k)[:, None, None]
    out = {}
    for name, table in data.items():
        table = np.asarray(table)
        local = table[rows, local_idx]  # [K, S, b_local, ...]
        spec = P(None, None, DATA_AXIS, *([None] * (table.ndim - 2)))
        out[name] = jax.make_array_from_process_local_data(
            NamedSharding(mesh, spec), local, (k, s, b) + table.shape[2:]
        )
    out["mask"] = jax.make_array_from_process_local_data(
        NamedSharding(mesh, P(None, None, DATA_AXIS)), np.asarray(valid)[:, :, cols], (k, s, b)
    )
    return out


@functools.lru_cache(maxsize=32)
def compiled_epoch_batches(task):
    """One epoch over pre-gathered global batches ``[K, S, B, ...]`` (:func:`epoch_batches`):
    ``lax.scan`` of ``_trainer.batch_step``, vmapped over the K replicated states, jitted,
    state donated. Returns ``(state, losses [K, S])``. With K = 1 the un-vmapped epoch runs,
    as in ``_trainer.compiled_epoch``."""

    def epoch(state, batches):
        return jax.lax.scan(functools.partial(T.batch_step, task), state, batches)

    vmapped = jax.jit(jax.vmap(epoch), donate_argnums=0)
    single = jax.jit(epoch, donate_argnums=0)

    def run(state, batches):
        if batches["mask"].shape[0] != 1:
            return vmapped(state, batches)
        first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
        return jax.tree.map(lambda a: a[None], single(first(state), first(batches)))

    return run


def restore_target(abstract_tree: Any) -> Any:
    """``ShapeDtypeStruct`` leaves with a sharding, for an orbax restore: replicated over
    the global mesh with several processes, else on this process's first device.

    Orbax refuses a checkpoint written by a different topology (another process count)
    unless the target says where every array goes, so a workdir trained by two processes
    is read back by a one-process ``evaluate`` or ``route`` through this target.
    """
    if multi_process():
        sharding = NamedSharding(global_mesh(), P())
    else:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract_tree
    )


def barrier(name: str) -> None:
    """Waits until every process reaches ``name`` (no-op with one process)."""
    if multi_process():
        multihost_utils.sync_global_devices(name)


def check_data_parallel(config) -> None:
    """Several processes need the data-parallel mesh (there is no other multi-process path)."""
    if multi_process() and not config.devices.data_parallel:
        raise ValueError(
            f"{jax.process_count()} JAX processes need --config.devices.data_parallel=True "
            "(the batch axis is what spans the processes)"
        )
