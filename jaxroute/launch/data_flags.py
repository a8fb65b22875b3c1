"""The flags every app that reads data or a workdir shares, defined once."""

from __future__ import annotations

from absl import app, flags

from jaxroute.data import load_data

DATA_PATH = flags.DEFINE_string(
    "data_path", None, "Data file or folder (or synthetic[:k=v,...]); overrides config.data.path."
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Workdir: config.json, checkpoints, metrics.jsonl, report and figures."
)
DROP_INCOMPLETE = flags.DEFINE_bool(
    "drop_incomplete", False, "Drop samples with a model missing after merging (logged)."
)
COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-process runs (--config.devices.distributed): host:port of process 0's JAX "
    "coordinator (default $JAX_COORDINATOR_ADDRESS, else JAX's cluster auto-detection).",
)
NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Multi-process runs: number of processes (default $JAX_NUM_PROCESSES)."
)
PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "Multi-process runs: this process, 0..N-1 (default $JAX_PROCESS_ID)."
)
DATA_FORMAT = flags.DEFINE_string(
    "data_format", None, "auto | wide | long | generic | synthetic | tfds; overrides the config."
)


def apply_data_flags(config):
    """``--data_path`` / ``--data_format`` win over the config (every app that reads data)."""
    with config.unlocked():
        if DATA_PATH.value:
            config.data.path = DATA_PATH.value
        if DATA_FORMAT.value:
            config.data.format = DATA_FORMAT.value
    if not config.data.path:
        raise ValueError("no data: give --data_path=PATH (or set config.data.path)")
    return config


def load_data_or_exit():
    """``--data_path`` loaded and validated (a DataError is one line, exit code 2)."""
    if not DATA_PATH.value:
        raise app.UsageError("--data_path is required")
    return load_data(DATA_PATH.value, DATA_FORMAT.value, drop_incomplete=DROP_INCOMPLETE.value)
