"""Pure train/eval steps and the epoch loop, over K routers of the same shape at once.

A train state is a plain pytree ``{"params", "opt_state", "step", "rng"}`` (``rng`` is
raw key data so that it checkpoints). K states with the same shapes (seeds, loss
weights, ...) are stacked on a leading axis and trained by one compiled program, either
vmapped or in CPU lanes (:func:`compiled_epoch`). One epoch is one ``lax.scan`` over its
batches, so an epoch costs one dispatch. Batches are padded to the batch size with
masked rows (the losses exclude them), which keeps the last partial batch (docs/method.md §3)
without a second compilation.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

Batch = dict[str, jax.Array]


def _cosine(learning_rate: float, warmup_steps: int, total_steps: int):
    """Linear warm-up from 0 over ``warmup_steps`` (none: start at the peak), then cosine
    decay to 0 at ``total_steps``."""
    return optax.warmup_cosine_decay_schedule(
        0.0 if warmup_steps else learning_rate,
        learning_rate,
        warmup_steps,
        max(total_steps, warmup_steps + 1),
    )


def _constant(learning_rate: float, warmup_steps: int, total_steps: int):
    """The learning rate itself; with ``warmup_steps``, reached linearly from 0 first."""
    del total_steps
    if not warmup_steps:
        return learning_rate
    return optax.linear_schedule(0.0, learning_rate, warmup_steps)


#: ``train.schedule`` -> ``fn(learning_rate, warmup_steps, total_steps)`` -> a rate or an
#: optax schedule.
SCHEDULES: dict[str, Callable[[float, int, int], Any]] = {
    "constant": _constant,
    "cosine": _cosine,
}

#: ``train.optimizer`` -> ``fn(learning_rate, weight_decay)``. Only ``adamw`` decays the
#: weights: ``train.weight_decay > 0`` with another optimizer is refused
#: (:mod:`jaxroute.train.config_checks`), not silently turned into AdamW.
OPTIMIZERS: dict[str, Callable[[Any, float], optax.GradientTransformation]] = {
    "adam": lambda lr, wd: optax.adam(lr),
    "adamw": lambda lr, wd: optax.adamw(lr, weight_decay=wd),
    "sgd": lambda lr, wd: optax.sgd(lr, momentum=0.9),
}
DECAYING_OPTIMIZERS = ("adamw",)


def make_optimizer(
    learning_rate: float = 1e-4,
    *,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int = 1,
    grad_clip: float = 0.0,
) -> optax.GradientTransformation:
    """An optimiser of :data:`OPTIMIZERS` on a schedule of :data:`SCHEDULES`, after a
    global-norm gradient clip when ``grad_clip > 0``."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule '{schedule}' ({', '.join(SCHEDULES)})")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{optimizer}' ({', '.join(OPTIMIZERS)})")
    if weight_decay and optimizer not in DECAYING_OPTIMIZERS:
        raise ValueError(
            f"weight_decay={weight_decay} with optimizer '{optimizer}', which has no weight "
            f"decay; use {' or '.join(DECAYING_OPTIMIZERS)}"
        )
    lr = SCHEDULES[schedule](learning_rate, warmup_steps, total_steps)
    tx = OPTIMIZERS[optimizer](lr, weight_decay)
    if grad_clip:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx)
    return tx


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a cache key
class Task:
    """What one group of K routers learns: a module, an objective and an optimiser.

    ``objective(outputs, batch, **hparams) -> loss`` gets the module's ``[B, M]`` outputs,
    the batch (``x``, ``quality``, ``cost``, ``mask`` ``[B]``; masked rows must not
    count) and the router's hyper-parameters from its state (see :func:`init_states`).
    """

    module: nn.Module
    objective: Callable[..., jax.Array]
    tx: optax.GradientTransformation


def _init_one(task: Task, feature_dim: int, seed: jax.Array, hparams) -> dict[str, Any]:
    init_key, rng = jax.random.split(jax.random.key(seed))
    params = task.module.init(init_key, jnp.zeros((1, feature_dim), jnp.float32))
    return {
        "params": params,
        "opt_state": task.tx.init(params),
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(rng),
        "hparams": hparams,
    }


@functools.lru_cache(maxsize=32)
def _compiled_init(task: Task, feature_dim: int):
    return jax.jit(jax.vmap(functools.partial(_init_one, task, feature_dim)))


def init_states(task: Task, seeds, feature_dim: int, hparams=None) -> dict[str, Any]:
    """K train states, one per seed, stacked on a leading axis (one compiled init).

    Args:
      task: what to train.
      seeds: K seeds (initialisation and dropout).
      feature_dim: D.
      hparams: optional dict name -> K values: per-router loss hyper-parameters (a loss
        weight, a temperature, λ) passed to ``task.objective`` as keyword arguments, so
        K routers that differ only in them train as one vmapped state.
    """
    seeds = jnp.asarray(list(seeds), jnp.uint32)
    hp = {k: jnp.asarray(v, jnp.float32).reshape(len(seeds)) for k, v in (hparams or {}).items()}
    return _compiled_init(task, int(feature_dim))(seeds, hp)


def init_state(task: Task, seed: int, feature_dim: int, hparams=None) -> dict[str, Any]:
    """One train state from ``seed`` (``hparams``: name -> scalar)."""
    hp = {k: [v] for k, v in (hparams or {}).items()}
    return jax.tree.map(lambda a: a[0], init_states(task, [seed], feature_dim, hp))


def _loss_and_grads(task: Task, params, batch: Batch, rng, hparams):
    def loss_fn(p):
        out = task.module.apply(p, batch["x"], deterministic=False, rngs={"dropout": rng})
        return task.objective(out, batch, **hparams)

    return jax.value_and_grad(loss_fn)(params)


def train_step(task: Task, state, data: Batch, idx: jax.Array, valid: jax.Array):
    """One optimiser step on rows ``idx`` ``[B]`` of ``data`` (``valid`` masks padding)."""
    batch = {k: v[idx] for k, v in data.items()}
    batch["mask"] = valid
    return batch_step(task, state, batch)


def batch_step(task: Task, state, batch: Batch):
    """One optimiser step on a gathered ``batch`` (``x``, ``quality``, ``cost``, ``mask``)."""
    rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
    loss, grads = _loss_and_grads(task, state["params"], batch, rng, state["hparams"])
    updates, opt_state = task.tx.update(grads, state["opt_state"], state["params"])
    params = optax.apply_updates(state["params"], updates)
    new = {"params": params, "opt_state": opt_state, "step": state["step"] + 1}
    new["rng"] = state["rng"]
    new["hparams"] = state["hparams"]
    return new, loss


def train_epoch(task: Task, state, data: Batch, idx: jax.Array, valid: jax.Array):
    """Scans ``train_step`` over an epoch's batches ``idx`` ``[S, B]``; returns losses ``[S]``."""
    return jax.lax.scan(lambda s, b: train_step(task, s, data, *b), state, (idx, valid))


def _lane_group(task: Task, state, data: Batch, idx: jax.Array, valid: jax.Array):
    """L routers (the leading axis of every argument) stepped side by side for one epoch.

    Each router takes the un-vmapped :func:`train_step` of a single run: L independent
    chains of plain GEMMs in one program, which XLA's CPU runtime executes concurrently.
    Returns ``(state, losses [L, S])``, stacked as given.
    """
    lanes = idx.shape[0]
    take = lambda tree, k: jax.tree.map(lambda a: a[k], tree)  # noqa: E731
    states = tuple(take(state, k) for k in range(lanes))
    tables = tuple(take(data, k) for k in range(lanes))

    def step(carry, batch):
        i, v = batch  # [L, B] each
        outs = [train_step(task, carry[k], tables[k], i[k], v[k]) for k in range(lanes)]
        return tuple(o[0] for o in outs), jnp.stack([o[1] for o in outs])

    batches = (jnp.swapaxes(idx, 0, 1), jnp.swapaxes(valid, 0, 1))  # [S, L, B]
    states, losses = jax.lax.scan(step, states, batches)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states), losses.T


def lanes_epoch(task: Task, lanes: int, state, data: Batch, idx: jax.Array, valid: jax.Array):
    """``train_epoch`` of K stacked routers, ``lanes`` at a time (CPU's layout for big ones).

    The K routers go in ``K // lanes`` groups of ``lanes`` (a ``lax.map``, so the program
    holds one group) and one group of the ``K % lanes`` left; a group steps its routers
    side by side with the single-router math, so each router's result equals its own
    separate run. Arguments as for ``jax.vmap(train_epoch)``: ``[K, ...]`` leading axes.
    """
    k = idx.shape[0]
    groups, rest = divmod(k, lanes)
    args = (state, data, idx, valid)
    parts = []
    if groups:
        head = jax.tree.map(lambda a: a[: groups * lanes], args)
        if groups == 1:
            parts.append(_lane_group(task, *head))
        else:
            split = jax.tree.map(lambda a: a.reshape(groups, lanes, *a.shape[1:]), head)
            out = jax.lax.map(lambda a: _lane_group(task, *a), split)
            parts.append(jax.tree.map(lambda a: a.reshape(groups * lanes, *a.shape[2:]), out))
    if rest:
        parts.append(_lane_group(task, *jax.tree.map(lambda a: a[groups * lanes :], args)))
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)


# Per-router FLOPs of one step (XLA's count) from which K routers train in CPU lanes
# rather than vmapped. Below it per-op overheads dominate and vmap's K-wide ops amortise
# them as well as lanes do; above it XLA CPU's batched GEMMs and K-wide temporaries cost
# more than K plain GEMMs. 8 EquiRouters, 2 cores, lanes / vmap against 8 sequential runs
# (2026-12-06): 0.04 GFLOP a step (trunk 64-32-32) 2.05x / 2.09x; 0.40 GFLOP (256-128-128)
# 1.27x / 1.09x; 1.45 GFLOP (512-256-256) 1.03x / 0.87x; 5.5 GFLOP (full size) see the
# docs/speed.md.
LANES_MIN_FLOPS = 1e8


def cpu_lanes() -> int:
    """Routers stepped side by side in CPU lanes: the cores this process may use (at most 4)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


def step_flops(task: Task, state, data: Batch, batch_size: int) -> float:
    """XLA's FLOP count of one router's :func:`train_step`; ``state`` and ``data`` stacked
    ``[K, ...]`` as for :func:`compiled_epoch` (only their shapes are read)."""
    idx = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    valid = jax.ShapeDtypeStruct((batch_size,), jnp.bool_)
    one = lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype)  # noqa: E731
    shapes = jax.tree.map(one, (state, data))
    lowered = jax.jit(functools.partial(train_step, task)).lower(*shapes, idx, valid)
    cost = lowered.cost_analysis() or {}
    return float(cost.get("flops", 0.0))


@functools.lru_cache(maxsize=32)
def compiled_epoch(task: Task, strategy: str = "auto"):
    """``train_epoch`` over K stacked states, jitted, state donated.

    With K = 1 the leading axis is dropped and the un-vmapped epoch runs. With K > 1,
    ``strategy``:

    - ``"vmap"``: one vmapped epoch (K-wide ops; best for small routers and on
      accelerators).
    - ``"lanes"``: :func:`lanes_epoch` with :func:`cpu_lanes` lanes: every router takes
      the single-router step (same results as K separate runs), the cores work on
      different routers at once. On CPU, XLA's batched matmuls (what vmap makes of a
      Dense layer) run slower than plain ones, so big routers should not pay for them.
    - ``"auto"``: lanes on CPU when a router's step costs at least ``LANES_MIN_FLOPS``
      (XLA's count), else vmap; decided once per shape.
    """
    if strategy not in ("auto", "vmap", "lanes"):
        raise ValueError(f"unknown strategy '{strategy}' (auto, vmap, lanes)")
    vmapped = jax.jit(jax.vmap(functools.partial(train_epoch, task)), donate_argnums=0)
    single = jax.jit(functools.partial(train_epoch, task), donate_argnums=0)
    lanes = jax.jit(functools.partial(lanes_epoch, task, cpu_lanes()), donate_argnums=0)
    chosen: dict[Any, str] = {}
    first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731

    def pick(state, data, idx) -> str:
        if strategy != "auto":
            return strategy
        leaves, tree = jax.tree.flatten((state, data, idx))
        key = (tree, tuple((a.shape, str(a.dtype)) for a in leaves))
        if key not in chosen:
            big = jax.default_backend() == "cpu" and cpu_lanes() > 1
            big = big and step_flops(task, state, data, idx.shape[-1]) >= LANES_MIN_FLOPS
            chosen[key] = "lanes" if big else "vmap"
        return chosen[key]

    def run(state, data, idx, valid):
        if idx.shape[0] != 1:
            fn = lanes if pick(state, data, idx) == "lanes" else vmapped
            return fn(state, data, idx, valid)
        out = single(first(state), first(data), idx[0], valid[0])
        return jax.tree.map(lambda a: a[None], out)

    run.strategy = lambda state, data, idx: (
        "single" if idx.shape[0] == 1 else pick(state, data, idx)
    )
    return run


def eval_loss(task: Task, state, data: Batch) -> jax.Array:
    """Objective on a whole (small) split, all rows valid."""
    batch = dict(data)
    batch["mask"] = jnp.ones(batch["x"].shape[0], bool)
    out = task.module.apply(state["params"], batch["x"])
    return task.objective(out, batch, **state["hparams"])


@functools.lru_cache(maxsize=32)
def compiled_eval_loss(task: Task):
    return jax.jit(jax.vmap(functools.partial(eval_loss, task)))


def epoch_indices(n: int, batch_size: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Batches of one epoch, reshuffled from ``(seed, epoch)``, padded to the batch size.

    Returns ``idx`` and ``valid``, both ``[S, B]``. The shuffle depends only on the seed and
    the epoch, so a resumed run sees exactly the batches of an uninterrupted one.
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    steps = -(-n // batch_size)
    idx = np.zeros(steps * batch_size, np.int32)
    idx[:n] = perm
    valid = np.zeros(steps * batch_size, bool)
    valid[:n] = True
    return idx.reshape(steps, batch_size), valid.reshape(steps, batch_size)


def predict(module: nn.Module, params, x: jax.Array, *, chunk: int = 2048) -> np.ndarray:
    """``module`` outputs for features ``[K, N, D]`` and K stacked params -> ``[K, N, M]``.

    Rows go in fixed-size chunks (padded) so memory stays bounded and shapes compile once.
    """
    x = np.asarray(x)
    k, n, d = x.shape
    chunk = min(chunk, n)
    fn = _compiled_apply(module)
    outs = []
    for start in range(0, n, chunk):
        part = x[:, start : start + chunk]
        pad = chunk - part.shape[1]
        if pad:
            part = np.concatenate([part, np.zeros((k, pad, d), part.dtype)], axis=1)
        outs.append(np.asarray(fn(params, jnp.asarray(part)))[:, : chunk - pad])
    return np.concatenate(outs, axis=1)


@functools.lru_cache(maxsize=32)
def _compiled_apply(module: nn.Module):
    return jax.jit(jax.vmap(module.apply))


def check_finite(losses: np.ndarray, *, name: str, epoch: int, steps_per_epoch: int) -> None:
    """Raises FloatingPointError naming the router, seed index, step and loss value."""
    losses = np.asarray(losses)  # [K, S]
    bad = ~np.isfinite(losses)
    if bad.any():
        k, s = np.argwhere(bad)[0]
        step = epoch * steps_per_epoch + int(s) + 1
        raise FloatingPointError(
            f"router '{name}': loss is {losses[k, s]} at step {step} (epoch {epoch + 1}, "
            f"router copy {k}); stopping. The last good checkpoint is kept."
        )
