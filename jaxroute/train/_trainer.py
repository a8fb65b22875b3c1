"""Pure train/eval steps and the epoch loop, vmapped over K routers of the same shape.

A train state is a plain pytree ``{"params", "opt_state", "step", "rng"}`` (``rng`` is
raw key data so that it checkpoints). K states with the same shapes (seeds, loss
weights, ...) are stacked on a leading axis and trained by one compiled, vmapped step.
One epoch is one ``lax.scan`` over its batches, so an epoch costs one dispatch. Batches
are padded to the batch size with masked rows (the losses exclude them), which keeps
the last partial batch (METHOD.md §3) without a second compilation.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

Batch = dict[str, jax.Array]


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
    """Adam (default), AdamW or SGD with a constant / cosine / warmup-cosine schedule."""
    if schedule == "constant":
        lr = learning_rate
    elif schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0 if warmup_steps else learning_rate,
            learning_rate,
            warmup_steps,
            max(total_steps, warmup_steps + 1),
        )
    else:
        raise ValueError(f"unknown schedule '{schedule}' (constant, cosine)")
    if optimizer == "adam":
        tx = optax.adam(lr) if not weight_decay else optax.adamw(lr, weight_decay=weight_decay)
    elif optimizer == "adamw":
        tx = optax.adamw(lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        tx = optax.sgd(lr, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer '{optimizer}' (adam, adamw, sgd)")
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


@functools.lru_cache(maxsize=32)
def compiled_epoch(task: Task):
    """``train_epoch`` vmapped over K stacked states, jitted, state donated.

    With K = 1 the leading axis is dropped and the un-vmapped epoch runs instead: on CPU
    XLA's batched matmuls (what vmap makes of a Dense layer) run about half as fast as
    plain ones, so a single router should not pay for the stacking.
    """
    vmapped = jax.jit(jax.vmap(functools.partial(train_epoch, task)), donate_argnums=0)
    single = jax.jit(functools.partial(train_epoch, task), donate_argnums=0)

    def run(state, data, idx, valid):
        if idx.shape[0] != 1:
            return vmapped(state, data, idx, valid)
        first = lambda tree: jax.tree.map(lambda a: a[0], tree)  # noqa: E731
        out = single(first(state), first(data), idx[0], valid[0])
        return jax.tree.map(lambda a: a[None], out)

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
