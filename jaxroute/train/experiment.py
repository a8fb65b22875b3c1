"""``train_and_evaluate(config, workdir)``: data -> features -> routers -> sweep -> report.

Each configured router trains as one vmapped group over the K seeds (a seed fixes the
split, the initialisation and the batch order); see :mod:`jaxroute.train.groups`.
Every group checkpoints after each epoch under ``workdir/checkpoints/<router>``; a
restarted run resumes from the latest good checkpoint and ends bit-identical to an
uninterrupted one. ``train_and_evaluate`` hands the trained parameters and the splits
to the evaluation in memory; ``evaluate`` rebuilds the report from the checkpoints.

The pieces: :mod:`~jaxroute.train.workdir` (config.json, run_info, metrics),
:mod:`~jaxroute.train.inputs` (data, features, splits), :mod:`~jaxroute.train.groups`
(one router group's training and restore), :mod:`~jaxroute.train.evaluation`
(predictions, sweeps, report).
"""

from __future__ import annotations

import os
import pathlib

from jaxroute import data as jdata
from jaxroute import encoders
from jaxroute import models as jmodels
from jaxroute.train import _distributed as dist
from jaxroute.train import _guard
from jaxroute.train.config_checks import check_config
from jaxroute.train.evaluation import evaluate_fitted
from jaxroute.train.evaluation import predicted_costs as _predicted_costs
from jaxroute.train.evaluation import router_predictions as _router_predictions
from jaxroute.train.groups import (
    COST_GROUP,
    COST_SEED_OFFSET,
    Fitted,
    build_task,
    data_mesh,
    epochs_of,
    evaluated_epoch,
    hparam_variants,
    restore_fitted,
    restore_params,
    steps_per_epoch,
    train_group,
    trainable_groups,
    trained_group,
)
from jaxroute.train.inputs import Splits, load_experiment_data, make_splits
from jaxroute.train.workdir import (
    MetricWriter,
    check_resumable,
    config_with_data,
    read_config,
    router_names,
    write_config,
    write_run_info,
)


def _encoder_dtype(config) -> str | None:
    """The encoder mode the run's features were embedded with (None: not embedded)."""
    if config.features.source != "encoder":
        return None
    encoder = encoders.config_encoder(config.features)
    return encoders.encoder_dtype(encoder, config.features.get("encoder_dtype", "auto"))


@_guard.holds_workdir_lock  # one writer per workdir (docs/reliability.md)
def fit(config, workdir: str | os.PathLike, data: jdata.RoutingData | None = None) -> Fitted:
    """Trains the cost model and every configured router (resuming); returns them."""
    check_config(config)
    workdir = pathlib.Path(workdir)
    check_resumable(config, workdir)
    data = data if data is not None else load_experiment_data(config)
    # Rows in another order than the first run's are put back in its order (same splits).
    data = _guard.check_fingerprint(workdir, data, reorder=True)
    # Everything the config can get wrong is checked before the workdir is written to.
    splits = make_splits(config, data)
    tc = config.train
    n = splits.train[0].num_prompts
    mesh = data_mesh(config)
    to_train = [
        (name, rc, offset, build_task(rc, data.num_models, tc, n))
        for name, rc, offset in trainable_groups(config, router_names(config))
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    _guard.check_fingerprint(workdir, data, record=dist.is_main())  # refuses other data
    dist.barrier("jaxroute:checked_config")  # all read config.json before process 0 writes
    if dist.is_main():
        write_config(config, workdir)
    writer = MetricWriter(workdir)
    if dist.is_main():
        write_run_info(
            workdir, data, splits, _encoder_dtype(config), encoders.config_encoder(config.features)
        )
    groups = {}
    for name, rc, offset, task in to_train:
        params = train_group(
            name,
            task,
            splits,
            epochs=epochs_of(rc, tc),
            batch_size=tc.batch_size,
            workdir=workdir,
            keep=tc.keep_checkpoints,
            writer=writer,
            mesh=mesh,
            init_seed_offset=offset,
            batch_fields=jmodels.router_spec(rc.model).batch_fields,
            hparams=hparam_variants(rc)[1],
        )
        step = evaluated_epoch(name, rc, config, workdir)
        if step != epochs_of(rc, tc):  # eval.checkpoint='best': that epoch's parameters
            shape = (splits.seeds, splits.train[0].features.shape[1])
            params = restore_params(
                name,
                task,
                *shape,
                workdir,
                epochs=step,
                offset=offset,
                hparams=hparam_variants(rc)[1],
            )
        groups[name] = (task, params)
    return Fitted(splits, groups)


def evaluate(
    config,
    workdir,
    data: jdata.RoutingData | None = None,
    *,
    test_data: jdata.RoutingData | None = None,
    output_dir=None,
) -> dict:
    """Rebuilds every router from the checkpoints and writes the report.

    ``test_data`` (other data, same models) replaces every seed's test split.
    """
    workdir = pathlib.Path(workdir)
    _guard.ensure_not_training(workdir)
    data = data if data is not None else load_experiment_data(config)
    # checkpoints trained on other data: refuse; rows reordered: the first run's order
    data = _guard.check_fingerprint(workdir, data, reorder=True)
    splits = make_splits(config, data)
    if test_data is not None:
        if tuple(test_data.models) != tuple(data.models):
            raise jdata.DataError(
                f"{test_data.source}: models {list(test_data.models)} differ from the "
                f"training data's {list(data.models)}"
            )
        splits.test = [test_data] * len(splits.seeds)
        data = test_data
    splits.part(config.eval.get("split", "test"))  # a bad part fails before any restore
    names = router_names(config)
    fitted = restore_fitted(config, splits, workdir, names)
    return evaluate_fitted(config, fitted, data, names, output_dir or workdir, workdir=workdir)


@_guard.holds_workdir_lock  # held from loading the data to the report
def train_and_evaluate(config, workdir: str | os.PathLike) -> dict:
    """The whole experiment: fit (resuming from checkpoints), then evaluate and report."""
    check_config(config)
    data = load_experiment_data(config)
    fitted = fit(config, workdir, data)
    return evaluate_fitted(config, fitted, data, router_names(config), workdir)


def predicted_costs(config, splits: Splits, workdir, part: str = "test"):
    """Cost-model predictions ``[K, N, M]`` of a trained workdir (restored from disk)."""
    fitted = restore_fitted(config, splits, workdir, [])
    return _predicted_costs(config, fitted, part)


def predict_router(name, rc, config, splits: Splits, workdir, cost_preds, part="test"):
    """Scores and predicted costs ``[K, N, M]`` of router ``name`` (restored from disk)."""
    groups = {}
    if jmodels.router_spec(rc.model).trainable:
        train = splits.train[0]
        shape = (splits.seeds, train.features.shape[1], train.num_models, train.num_prompts)
        groups[name] = trained_group(name, rc, config, *shape, workdir)
    return _router_predictions(name, rc, Fitted(splits, groups), cost_preds, part)


__all__ = [
    "COST_GROUP",
    "COST_SEED_OFFSET",
    "Fitted",
    "MetricWriter",
    "Splits",
    "build_task",
    "config_with_data",
    "evaluate",
    "fit",
    "load_experiment_data",
    "make_splits",
    "predict_router",
    "predicted_costs",
    "read_config",
    "router_names",
    "steps_per_epoch",
    "train_and_evaluate",
    "train_group",
    "trained_group",
    "write_config",
]
