"""Training: pure jit'd steps vmapped over K routers, the epoch loop, orbax checkpoints."""

from jaxroute.train._trainer import (
    Task,
    check_finite,
    compiled_epoch,
    epoch_indices,
    init_state,
    init_states,
    make_optimizer,
    predict,
    train_epoch,
    train_step,
)
from jaxroute.train.checkpoint import Checkpointer
from jaxroute.train.evaluation import evaluate_fitted
from jaxroute.train.experiment import (
    evaluate,
    fit,
    predict_router,
    predicted_costs,
    train_and_evaluate,
)
from jaxroute.train.groups import Fitted, build_task, train_group, trained_group
from jaxroute.train.inputs import Splits, load_experiment_data, make_splits
from jaxroute.train.workdir import MetricWriter, read_config, router_names, write_config

__all__ = [
    "Checkpointer",
    "Fitted",
    "MetricWriter",
    "Splits",
    "Task",
    "build_task",
    "check_finite",
    "compiled_epoch",
    "epoch_indices",
    "evaluate",
    "evaluate_fitted",
    "fit",
    "init_state",
    "init_states",
    "load_experiment_data",
    "make_optimizer",
    "make_splits",
    "predict",
    "predict_router",
    "predicted_costs",
    "read_config",
    "router_names",
    "train_and_evaluate",
    "train_epoch",
    "train_group",
    "train_step",
    "trained_group",
    "write_config",
]
