"""``train_and_evaluate(config, workdir)``: data -> features -> routers -> sweep -> report.

Each configured router trains as one vmapped group over the K seeds (a seed fixes the
split, the initialisation and the batch order). Every group checkpoints after each
epoch under ``workdir/checkpoints/<router>``; a restarted run resumes from the latest
good checkpoint and ends bit-identical to an uninterrupted one. ``evaluate`` rebuilds
the report from the checkpoints alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxroute import data as jdata
from jaxroute import losses as jlosses
from jaxroute import models as jmodels
from jaxroute.train import _distributed as dist
from jaxroute.train import _guard
from jaxroute.train import _trainer as T
from jaxroute.train.checkpoint import Checkpointer

COST_GROUP = "cost_model"
COST_SEED_OFFSET = 1000  # the cost model's init seed differs from the routers' ones


# ---------------------------------------------------------------------- small pieces
class MetricWriter:
    """Appends one JSON object per line to ``workdir/metrics.jsonl``."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = pathlib.Path(workdir) / "metrics.jsonl"

    def write(self, **record: Any) -> None:
        if not dist.is_main():  # one writer: process 0
            return
        record = {k: _jsonable(v) for k, v in record.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def _jsonable(v):
    if isinstance(v, np.ndarray | jax.Array):
        return np.asarray(v).tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _config_json(config) -> dict:
    """The config as JSON values (tuples become lists), as config.json stores it."""
    return json.loads(json.dumps(config.to_dict(), default=list))


def write_config(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> pathlib.Path:
    """The resolved config as ``workdir/config.json``."""
    path = pathlib.Path(workdir) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_config_json(config), indent=2, sort_keys=True) + "\n")
    return path


def check_resumable(config, workdir) -> None:
    """A workdir resumes only the run it holds: training fields must match config.json.

    ``eval`` and ``run_routers`` may change between runs (they do not touch checkpoints).
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    new = _config_json(config)
    differ = sorted(
        k
        for k in set(old) | set(new)
        if k not in ("eval", "run_routers", "routers") and old.get(k) != new.get(k)
    )
    differ += sorted(
        f"routers.{k}"
        for k in set(old.get("routers", {})) & set(new.get("routers", {}))
        if old["routers"][k] != new["routers"][k]
    )
    if differ:
        raise ValueError(
            f"{workdir} holds a run with a different config ({', '.join(differ)} differ from "
            f"its config.json); resuming would mix the two. Use a new --workdir or delete it."
        )


def write_run_info(workdir, data: jdata.RoutingData, splits) -> None:
    """What ``route`` needs to rebuild the routers without the data: names and shapes."""
    info = {
        "models": list(data.models),
        "feature_dim": int(data.features.shape[1]),
        "seeds": list(splits.seeds),
        "n_train": splits.train[0].num_prompts,
        "source": str(data.source),
    }
    (pathlib.Path(workdir) / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")


def router_names(config) -> list[str]:
    """Routers to run: ``config.run_routers`` (comma list) or every configured one."""
    names = [n.strip() for n in str(config.get("run_routers", "")).split(",") if n.strip()]
    names = names or list(config.routers.keys())
    unknown = [n for n in names if n not in config.routers]
    if unknown:
        raise ValueError(
            f"config.run_routers names unknown routers {unknown}; configured: "
            f"{list(config.routers.keys())}"
        )
    return names


# ---------------------------------------------------------------------- data
def load_experiment_data(config) -> jdata.RoutingData:
    """Loads ``config.data`` and attaches features as ``config.features`` says."""
    dc, fc = config.data, config.features
    data = jdata.load_data(dc.path, dc.format, drop_incomplete=dc.drop_incomplete)
    source = fc.source
    if source == "data":
        if data.features is None:
            raise jdata.DataError(
                f"{data.source}: has no features; set --config.features.source=encoder "
                "(embed the prompts) or =file with --config.features.path"
            )
        return data
    from jaxroute import encoders  # lazy: only runs that embed need tokenizers & weights

    view = fc.get("prompt_view", "full")
    encoded = data
    if source == "encoder" and view != "full" and data.prompts is not None:
        encoded = data.replace(prompts=encoders.apply_view(data.prompts.tolist(), view))
    feats = encoders.features_for(
        encoded,
        encoder_dir=fc.encoder_dir or None,
        cache_dir=fc.cache_dir or encoders.DEFAULT_CACHE_DIR,
        features_path=(fc.path or None) if source == "file" else None,
        batch_size=fc.batch_size,
    )
    return data.with_features(np.asarray(feats, np.float32))


@dataclasses.dataclass
class Splits:
    """Per-seed train / validation / test parts (lists of RoutingData, one per seed)."""

    seeds: list[int]
    train: list[jdata.RoutingData]
    val: list[jdata.RoutingData | None]
    test: list[jdata.RoutingData]


def make_splits(config, data: jdata.RoutingData) -> Splits:
    dc = config.data
    seeds = [int(s) for s in config.seeds]
    train, val, test = [], [], []
    for s in seeds:
        if dc.split == "in_domain":
            tr, te = jdata.split_in_domain(data, dc.train_fraction, s)
        elif dc.split == "out_of_domain":
            tasks = [t.strip() for t in str(dc.test_tasks).split(",") if t.strip()]
            tr, te = jdata.split_out_of_domain(data, tasks)
        else:
            raise ValueError(f"config.data.split: unknown '{dc.split}' (in_domain, out_of_domain)")
        va = None
        if config.train.val_fraction > 0:
            tr, va = jdata.holdout(tr, config.train.val_fraction, s)
        train.append(tr)
        val.append(va)
        test.append(te)
    return Splits(seeds, train, val, test)


def _stack(parts, field):
    return np.stack([getattr(p, field) for p in parts])


def _host_arrays(parts) -> dict[str, np.ndarray]:
    """Features, quality and cost of K same-size parts, stacked ``[K, N, ...]`` on the host."""
    return {
        "x": _stack(parts, "features"),
        "quality": _stack(parts, "quality"),
        "cost": _stack(parts, "cost"),
    }


def _device_arrays(parts) -> dict[str, jax.Array]:
    """Features, quality and cost of K same-size parts, stacked ``[K, N, ...]``."""
    return {
        "x": jnp.asarray(_stack(parts, "features")),
        "quality": jnp.asarray(_stack(parts, "quality")),
        "cost": jnp.asarray(_stack(parts, "cost")),
    }


# ---------------------------------------------------------------------- tasks
def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Batches per epoch; the last partial batch counts (it is padded and masked)."""
    return -(-n_train // batch_size)


def build_task(rc, num_models: int, tc, n_train: int) -> T.Task:
    """The Task (module, objective, optimiser) of one router config ``rc``."""
    kind = rc.model
    # Lists (from a config.json read back) become tuples: Flax modules must hash.
    module_kwargs = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in dict(rc.get("model_kwargs", {}) or {}).items()
    }
    module = jmodels.make_model(kind, num_models, **module_kwargs)
    tx = T.make_optimizer(
        float(rc.get("learning_rate", 0) or tc.learning_rate),
        optimizer=tc.optimizer,
        weight_decay=tc.weight_decay,
        schedule=tc.schedule,
        warmup_steps=tc.warmup_steps,
        total_steps=_epochs(rc, tc) * steps_per_epoch(n_train, tc.batch_size),
        grad_clip=tc.grad_clip,
    )
    if kind == "cost":

        def objective(out, batch, **hp):
            where = jnp.broadcast_to(batch["mask"][:, None], out.shape)
            return jlosses.mse_loss(out, module.cost_to_target(batch["cost"]), where=where)

        return T.Task(module, objective, tx)
    if rc.loss not in jlosses.LOSSES:
        raise ValueError(f"unknown loss '{rc.loss}'; choose one of {sorted(jlosses.LOSSES)}")
    loss_fn = jlosses.LOSSES[rc.loss]
    loss_kwargs = dict(rc.get("loss_kwargs", {}) or {})

    def objective(out, batch, **hparams):
        where = jnp.broadcast_to(batch["mask"][:, None], out.shape)
        kwargs = {**loss_kwargs, **hparams}
        return loss_fn(out, batch["quality"], costs=batch["cost"], where=where, **kwargs)

    return T.Task(module, objective, tx)


def _epochs(rc, tc) -> int:
    return int(rc.get("epochs", 0) or tc.epochs)


# ---------------------------------------------------------------------- devices
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


# ---------------------------------------------------------------------- training
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
) -> Any:
    """Trains K copies of ``task`` (one per seed) to ``epochs``; returns stacked params.

    Resumes from the latest good checkpoint under ``workdir/checkpoints/<name>``.
    """
    feature_dim = splits.train[0].features.shape[1]
    n = splits.train[0].num_prompts
    if any(t.num_prompts != n for t in splits.train):
        raise ValueError("vmapped training needs the same training size for every seed")
    # Several processes: host tables, per-process batch shards, replicated state (see
    # train/_distributed.py for the rules).
    multi = dist.multi_process()
    data = _host_arrays(splits.train) if multi else _device_arrays(splits.train)
    val = _device_arrays(splits.val) if splits.val[0] is not None else None
    state = T.init_states(task, [s + init_seed_offset for s in splits.seeds], feature_dim)
    if multi:
        state, val = dist.replicate((state, val), mesh)
    ckpt = Checkpointer(workdir / "checkpoints" / name, keep=keep)
    start = 0
    restored = ckpt.restore(state)
    if restored is not None:
        start, state = restored
        logging.info("%s: resumed from epoch %d", name, start)
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
        idx = np.stack([p[0] for p in parts])
        valid = np.stack([p[1] for p in parts])
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
        ckpt.save(epoch + 1, state, {"val_loss": metric})
        writer.write(
            router=name,
            epoch=epoch + 1,
            step=(epoch + 1) * steps,
            seconds=round(time.perf_counter() - t0, 4),
            **record,
        )
        bar.set_postfix(loss=f"{float(train_loss.mean()):.4g}")
    ckpt.close()
    return state["params"]


def restore_params(name: str, task: T.Task, seeds, feature_dim: int, workdir, *, epochs, offset=0):
    """Final (``epochs``) parameters of a trained group of K seeds, from its checkpoints."""
    target = jax.eval_shape(lambda: T.init_states(task, [s + offset for s in seeds], feature_dim))
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
        name, task, seeds, feature_dim, workdir, epochs=_epochs(rc, config.train), offset=offset
    )
    return task, params


# ---------------------------------------------------------------------- the run
@_guard.holds_workdir_lock  # one writer per workdir (README: Reliability)
def fit(config, workdir: str | os.PathLike, data: jdata.RoutingData | None = None) -> Splits:
    """Trains the cost model and every configured router (resuming), returns the splits."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    check_resumable(config, workdir)
    data = data if data is not None else load_experiment_data(config)
    _guard.check_fingerprint(workdir, data, record=dist.is_main())  # refuses other data
    dist.barrier("jaxroute:checked_config")  # all read config.json before process 0 writes
    if dist.is_main():
        write_config(config, workdir)
    splits = make_splits(config, data)
    writer = MetricWriter(workdir)
    if dist.is_main():
        write_run_info(workdir, data, splits)
    mesh = data_mesh(config)
    tc = config.train
    n = splits.train[0].num_prompts
    groups = []
    if config.cost_model.enabled:
        groups.append((COST_GROUP, config.cost_model, COST_SEED_OFFSET))
    for name in router_names(config):
        if config.routers[name].model != "knn":
            groups.append((name, config.routers[name], 0))
    for name, rc, offset in groups:
        task = build_task(rc, data.num_models, tc, n)
        train_group(
            name,
            task,
            splits,
            epochs=_epochs(rc, tc),
            batch_size=tc.batch_size,
            workdir=workdir,
            keep=tc.keep_checkpoints,
            writer=writer,
            mesh=mesh,
            init_seed_offset=offset,
        )
    return splits


# ---------------------------------------------------------------------- evaluation
def predict_router(name, rc, config, splits: Splits, workdir, cost_preds, part="test"):
    """Scores and predicted costs ``[K, N, M]`` of router ``name`` on a split part."""
    sets = getattr(splits, part)
    x = _stack(sets, "features")
    if rc.model == "knn":
        scores, own_cost = [], []
        for tr, s in zip(splits.train, sets, strict=True):
            q, c = jmodels.knn_predict(
                tr.features, tr.quality, tr.cost, s.features, k=min(int(rc.k), tr.num_prompts)
            )
            scores.append(np.asarray(q))
            own_cost.append(np.asarray(c))
        scores, own_cost = np.stack(scores), np.stack(own_cost)
        pred_cost = own_cost if rc.get("cost_source", "own") == "own" else cost_preds
        return scores, pred_cost
    train = splits.train[0]
    task, params = trained_group(
        name, rc, config, splits.seeds, x.shape[-1], train.num_models, train.num_prompts, workdir
    )
    return T.predict(task.module, params, x), cost_preds


def predicted_costs(config, splits: Splits, workdir, part="test") -> np.ndarray:
    """Cost-model predictions in USD ``[K, N, M]`` (or the true costs when disabled)."""
    sets = getattr(splits, part)
    if not config.cost_model.enabled:
        return _stack(sets, "cost")
    train = splits.train[0]
    x = _stack(sets, "features")
    task, params = trained_group(
        COST_GROUP,
        config.cost_model,
        config,
        splits.seeds,
        x.shape[-1],
        train.num_models,
        train.num_prompts,
        workdir,
        offset=COST_SEED_OFFSET,
    )
    out = T.predict(task.module, params, x)
    return np.asarray(task.module.target_to_cost(out))


def read_config(workdir) -> ml_collections.ConfigDict:
    """The resolved config a run wrote to ``workdir/config.json``."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; is {workdir} a jaxroute workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def config_with_data(config, path: str, data_format: str | None = None):
    """A copy of ``config`` reading ``path`` instead."""
    other = ml_collections.ConfigDict(config.to_dict())
    other.data.path = path
    if data_format:
        other.data.format = data_format
    return other


def evaluate(
    config,
    workdir,
    data: jdata.RoutingData | None = None,
    *,
    test_data: jdata.RoutingData | None = None,
    output_dir=None,
) -> dict:
    """Rebuilds every router's predictions from the checkpoints and writes the report.

    ``test_data`` (other data, same models) replaces every seed's test split.
    """
    from jaxroute import report as jreport
    from jaxroute import routing as jrouting

    workdir = pathlib.Path(workdir)
    _guard.ensure_not_training(workdir)
    data = data if data is not None else load_experiment_data(config)
    _guard.check_fingerprint(workdir, data)  # checkpoints trained on other data: refuse
    splits = make_splits(config, data)
    if test_data is not None:
        if tuple(test_data.models) != tuple(data.models):
            raise jdata.DataError(
                f"{test_data.source}: models {list(test_data.models)} differ from the "
                f"training data's {list(data.models)}"
            )
        splits.test = [test_data] * len(splits.seeds)
        data = test_data
    names = router_names(config)
    models = list(data.models)
    strong = None
    if config.eval.strong_model:
        if config.eval.strong_model not in models:
            raise ValueError(
                f"config.eval.strong_model '{config.eval.strong_model}' not in {models}"
            )
        strong = models.index(config.eval.strong_model)
    budgets = (config.eval.grid, int(config.eval.n_budgets))
    part = config.eval.get("split", "test")
    if part not in ("test", "val", "train"):
        raise ValueError(f"config.eval.split must be test, val or train, got '{part}'")
    if part == "val" and splits.val[0] is None:
        raise ValueError("config.eval.split='val' needs config.train.val_fraction > 0")
    evaluated = getattr(splits, part)
    cost_preds = predicted_costs(config, splits, workdir, part)
    routers: dict[str, list[dict]] = {}
    for i, name in enumerate(names):
        logging.info("evaluate: %s (%d/%d), both decision rules", name, i + 1, len(names))
        rc = config.routers[name]
        scores, pred_cost = predict_router(name, rc, config, splits, workdir, cost_preds, part)
        routers[name] = [
            jrouting.evaluate_router(
                scores[k], pred_cost[k], te.quality, te.cost, budgets=budgets, strong_model=strong
            )
            for k, te in enumerate(evaluated)
        ]
    logging.info("evaluate: reference routers and the report")
    per_seed_ref = [
        jreport.reference_entries(te.quality, te.cost, budgets=budgets, seed=seed)
        for seed, te in zip(splits.seeds, evaluated, strict=True)
    ]
    reference = {
        name: merge_seed_entries([r[name] for r in per_seed_ref]) for name in per_seed_ref[0]
    }
    summary = jrouting.dataset_summary(data.quality, data.cost, models, data.tasks)
    summary["source"] = str(data.source)
    summary["seeds"] = splits.seeds
    summary["n_train"] = splits.train[0].num_prompts
    summary["n_test"] = splits.test[0].num_prompts
    summary["evaluated_on"] = part
    summary["n_evaluated"] = evaluated[0].num_prompts
    summary["split"] = config.data.split
    strong_name = models[strong] if strong is not None else None
    if dist.is_main():  # the other processes build the same report without writing it
        paths = jreport.write_report(
            output_dir or workdir,
            dataset=summary,
            routers=routers,
            reference=reference,
            model_names=models,
            strong_model=strong_name,
        )
        report = json.loads(pathlib.Path(paths["json"]).read_text())
    else:
        paths = {}
        report = json.loads(json.dumps(jreport.build_report(summary, routers, reference)))
    report["paths"] = paths
    report["headline"] = jreport.headline_table(report)
    return report


def merge_seed_entries(entries: list[dict]) -> dict:
    """One reference entry from per-seed ones: numeric metrics averaged (with ``_std``)."""
    if len(entries) == 1:
        return entries[0]
    out = dict(entries[0])
    for key, value in entries[0].items():
        if key.endswith("_std") or isinstance(value, bool):
            continue
        if isinstance(value, int | float) or value is None:
            vals = [e.get(key) for e in entries if isinstance(e.get(key), int | float)]
            if vals:
                out[key] = float(np.mean(vals))
                out[f"{key}_std"] = float(np.std(vals))
    if "best_single_reached" in entries[0]:
        k = sum(bool(e.get("best_single_reached")) for e in entries)
        out["best_single_reached"] = k == len(entries)
        out["reached_best_single"] = f"{k}/{len(entries)}"
    out["seeds"] = [e["seeds"][0] if "seeds" in e else e for e in entries]
    if all(isinstance(e.get("lambda"), dict) for e in entries):
        out["lambda"] = merge_seed_entries([e["lambda"] for e in entries])
    return out


@_guard.holds_workdir_lock  # held from loading the data to the report
def train_and_evaluate(config, workdir: str | os.PathLike) -> dict:
    """The whole experiment: fit (resuming from checkpoints), then evaluate and report."""
    data = load_experiment_data(config)
    fit(config, workdir, data)
    return evaluate(config, workdir, data)
