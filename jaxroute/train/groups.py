"""One group = one router config trained as K vmapped copies (one per seed).

``build_task`` turns a router config into a :class:`~jaxroute.train.Task`;
``train_group`` trains (or resumes) it and returns its stacked parameters;
``trained_group`` rebuilds a finished group from its checkpoints (evaluate, route).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxroute import losses as jlosses
from jaxroute import models as jmodels
from jaxroute.train import _distributed as dist
from jaxroute.train import _trainer as T
from jaxroute.train.checkpoint import Checkpointer
from jaxroute.train.inputs import Splits, device_arrays, host_arrays
from jaxroute.train.workdir import MetricWriter, best_epoch

COST_GROUP = "cost_model"
COST_SEED_OFFSET = 1000  # the cost model's init seed differs from the routers' ones


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch; the last partial batch counts (it is padded and masked)."""
    return -(-n_train // batch_size)


def epochs_of(rc, tc) -> int:
    """The router's own ``epochs``, else ``train.epochs``."""
    return int(rc.get("epochs", 0) or tc.epochs)


def evaluated_epoch(name: str, rc, config, workdir) -> int:
    """The epoch whose parameters are evaluated and routed with: the last, or with
    ``eval.checkpoint='best'`` the one of lowest mean validation loss (over the seeds and
    hparams copies of the group; that checkpoint is kept beside the latest ones)."""
    epochs = epochs_of(rc, config.train)
    if config.eval.get("checkpoint", "last") != "best":
        return epochs
    return best_epoch(workdir, name, epochs)


def build_task(rc, num_models: int, tc, n_train: int) -> T.Task:
    """The Task (module, objective, optimiser) of one trainable router config ``rc``."""
    spec = jmodels.router_spec(rc.model)
    # Lists (from a config.json read back) become tuples: Flax modules must hash.
    module_kwargs = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in dict(rc.get("model_kwargs", {}) or {}).items()
    }
    module = jmodels.make_model(rc.model, num_models, **module_kwargs)
    tx = T.make_optimizer(
        float(rc.get("learning_rate", 0) or tc.learning_rate),
        optimizer=tc.optimizer,
        weight_decay=tc.weight_decay,
        schedule=tc.schedule,
        warmup_steps=tc.warmup_steps,
        total_steps=epochs_of(rc, tc) * steps_per_epoch(n_train, tc.batch_size),
        grad_clip=tc.grad_clip,
    )
    objective = spec.make_objective(module, rc) or loss_objective(rc)
    return T.Task(module, objective, tx)


def loss_objective(rc):
    """``objective(outputs, batch, **hparams)``: the router's loss on the valid rows."""
    if rc.loss not in jlosses.LOSSES:
        raise ValueError(f"unknown loss '{rc.loss}'; choose one of {sorted(jlosses.LOSSES)}")
    loss_fn = jlosses.LOSSES[rc.loss]
    loss_kwargs = dict(rc.get("loss_kwargs", {}) or {})

    def objective(out, batch, **hparams):
        where = jnp.broadcast_to(batch["mask"][:, None], out.shape)
        kwargs = {**loss_kwargs, **hparams}
        return loss_fn(out, batch["quality"], costs=batch["cost"], where=where, **kwargs)

    return objective


def hparam_variants(rc) -> tuple[list[str], dict[str, list[float]]]:
    """The router's loss hyper-parameter variants from ``rc.hparams``.

    ``rc.hparams`` maps a keyword of the loss to H values (all the same length); each
    value gives one more copy of the router per seed, trained in the same vmapped
    state. Returns the H name suffixes (``["[rank_weight=0]", ...]``, or ``[""]`` when
    there are none) and the hparams as name -> H floats.
    """
    hp = {
        k: [float(x) for x in (v if isinstance(v, list | tuple) else [v])]
        for k, v in dict(rc.get("hparams", {}) or {}).items()
    }
    if not hp:
        return [""], {}
    lengths = {len(v) for v in hp.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"hparams {hp}: every hyper-parameter needs the same number of values")
    h = lengths.pop()
    return ["[" + ",".join(f"{k}={v[i]:g}" for k, v in hp.items()) + "]" for i in range(h)], hp


def _copies(seeds, hparams, offset=0):
    """Init seeds and per-copy hparams of H variants x K seeds (variant-major)."""
    hparams = hparams or {}
    h = len(next(iter(hparams.values()))) if hparams else 1
    copy_seeds = [s + offset for _ in range(h) for s in seeds]
    hp = {k: [x for x in v for _ in seeds] for k, v in hparams.items()}
    return h, copy_seeds, hp


def data_mesh(config) -> Mesh | None:
    """A 1-D mesh over all devices for data parallelism (None on one device)."""
    devices = jax.devices()
    dist.check_data_parallel(config)
    if len(devices) == 1 or not config.devices.data_parallel:
        return None
    if config.train.batch_size % len(devices):
        raise ValueError(
            f"train.batch_size={config.train.batch_size} is not divisible by the "
            f"{len(devices)} devices of the data-parallel mesh"
        )
    return Mesh(np.array(devices), ("data",))


def train_group(
    name: str,
    task: T.Task,
    splits: Splits,
    *,
    epochs: int,
    batch_size: int,
    workdir: pathlib.Path,
    keep: int,
    writer: MetricWriter,
    mesh: Mesh | None,
    init_seed_offset: int = 0,
    batch_fields=None,
    hparams=None,
) -> Any:
    """Trains K copies of ``task`` (one per seed) to ``epochs``; returns stacked params.

    Resumes from the latest good checkpoint under ``workdir/checkpoints/<name>``.
    ``batch_fields`` (name -> ``fn(part, train)``, a spec's) adds arrays to the batches.
    ``hparams`` (name -> H values, :func:`hparam_variants`) trains H x K copies at once.
    """
    feature_dim = splits.train[0].features.shape[1]
    n = splits.train[0].num_prompts
    if any(t.num_prompts != n for t in splits.train):
        raise ValueError("vmapped training needs the same training size for every seed")
    h, copy_seeds, hp = _copies(splits.seeds, hparams, init_seed_offset)
    tile = (lambda a: np.concatenate([a] * h)) if h > 1 else (lambda a: a)  # noqa: E731
    # Several processes: host tables, per-process batch shards, replicated state (see
    # train/_distributed.py for the rules).
    multi = dist.multi_process()
    data = jax.tree.map(tile, host_arrays(splits.train, splits.train, batch_fields))
    if not multi:
        data = jax.tree.map(jnp.asarray, data)
    val = None
    if splits.val[0] is not None:
        val = jax.tree.map(tile, device_arrays(splits.val, splits.train, batch_fields))
    state = T.init_states(task, copy_seeds, feature_dim, hp)
    if multi:
        state, val = dist.replicate((state, val), mesh)
    ckpt = Checkpointer(workdir / "checkpoints" / name, keep=keep)
    start = 0
    restored = ckpt.restore(state)
    if restored is not None:
        start, state = restored
        logging.info("%s: resumed from epoch %d", name, start)
    writer.rewind(name, start)
    epoch_fn = T.compiled_epoch(task)
    eval_fn = T.compiled_eval_loss(task)
    idx_sharding = None
    if multi:
        epoch_fn = dist.compiled_epoch_batches(task)
    elif mesh is not None:
        idx_sharding = NamedSharding(mesh, P(None, None, "data"))
        rep = NamedSharding(mesh, P())
        data = jax.device_put(data, rep)
        state = jax.device_put(state, rep)
    steps = steps_per_epoch(n, batch_size)
    bar = tqdm(
        range(start, epochs),
        desc=f"train {name}",
        initial=start,
        total=epochs,
        disable=not dist.is_main(),
    )
    for epoch in bar:
        t0 = time.perf_counter()
        parts = [T.epoch_indices(n, batch_size, s, epoch) for s in splits.seeds]
        idx = np.stack([p[0] for p in parts] * h)
        valid = np.stack([p[1] for p in parts] * h)
        if multi:
            state, losses = epoch_fn(state, dist.epoch_batches(data, idx, valid, mesh))
        else:
            if idx_sharding is not None:
                idx, valid = jax.device_put((idx, valid), idx_sharding)
            state, losses = epoch_fn(state, data, idx, valid)
        losses = dist.to_host(losses)
        T.check_finite(losses, name=name, epoch=epoch, steps_per_epoch=steps)
        train_loss = losses.mean(axis=1)
        record = {"train_loss": train_loss}
        if val is not None:
            record["val_loss"] = dist.to_host(eval_fn(state, val))
        metric = float(np.mean(record.get("val_loss", train_loss)))
        # The record goes first: a kill before the save completes resumes from the
        # previous epoch, and the resumed run rewinds metrics.jsonl to it.
        writer.write(
            router=name,
            epoch=epoch + 1,
            step=(epoch + 1) * steps,
            seconds=round(time.perf_counter() - t0, 4),
            **record,
        )
        ckpt.save(epoch + 1, state, {"val_loss": metric})
        bar.set_postfix(loss=f"{float(train_loss.mean()):.4g}")
    ckpt.close()
    return state["params"]


def restore_params(
    name: str, task: T.Task, seeds, feature_dim: int, workdir, *, epochs, offset=0, hparams=None
):
    """Final (``epochs``) parameters of a trained group of K seeds, from its checkpoints."""
    _, copy_seeds, hp = _copies(seeds, hparams, offset)
    target = jax.eval_shape(lambda: T.init_states(task, copy_seeds, feature_dim, hp))
    target = dist.restore_target(target)  # any process count can read any checkpoint
    # Read-only: never creates, moves or writes anything (CheckpointError: one line).
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints" / name, read_only=True)
    try:
        got = ckpt.restore(target, step=epochs)
    finally:
        ckpt.close()
    return dist.to_host(got[1]["params"]) if dist.multi_process() else got[1]["params"]


def trained_group(
    name: str,
    rc,
    config,
    seeds,
    feature_dim: int,
    num_models: int,
    n_train: int,
    workdir,
    *,
    offset: int = 0,
):
    """``(task, stacked final params)`` of a trained group, rebuilt from its checkpoints."""
    task = build_task(rc, num_models, config.train, n_train)
    params = restore_params(
        name,
        task,
        seeds,
        feature_dim,
        workdir,
        epochs=evaluated_epoch(name, rc, config, workdir),
        offset=offset,
        hparams=hparam_variants(rc)[1],
    )
    return task, params


@dataclasses.dataclass
class Fitted:
    """What training hands to evaluation, in memory: the splits and the trained groups.

    ``groups`` maps a router name (and ``COST_GROUP``) to ``(task, stacked params)``.
    """

    splits: Splits
    groups: dict[str, tuple[T.Task, Any]]


def trainable_groups(config, names) -> list[tuple[str, Any, int]]:
    """``(name, router config, init seed offset)`` of every group that trains."""
    groups = []
    if config.cost_model.enabled:
        groups.append((COST_GROUP, config.cost_model, COST_SEED_OFFSET))
    for name in names:
        if jmodels.router_spec(config.routers[name].model).trainable:
            groups.append((name, config.routers[name], 0))
    return groups


def restore_fitted(config, splits: Splits, workdir, names) -> Fitted:
    """:class:`Fitted` rebuilt from a workdir's checkpoints (the evaluate and route apps)."""
    train = splits.train[0]
    shape = (splits.seeds, train.features.shape[1], train.num_models, train.num_prompts, workdir)
    groups = {
        name: trained_group(name, rc, config, *shape, offset=offset)
        for name, rc, offset in trainable_groups(config, names)
    }
    return Fitted(splits, groups)
