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
from jaxroute.train.experiment import (
    MetricWriter,
    evaluate,
    fit,
    load_experiment_data,
    make_splits,
    train_and_evaluate,
    write_config,
)

__all__ = [
    "Checkpointer",
    "MetricWriter",
    "Task",
    "check_finite",
    "compiled_epoch",
    "epoch_indices",
    "evaluate",
    "fit",
    "init_state",
    "init_states",
    "load_experiment_data",
    "make_optimizer",
    "make_splits",
    "predict",
    "train_and_evaluate",
    "train_epoch",
    "train_step",
    "write_config",
]
