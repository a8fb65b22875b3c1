"""Flags and start-up shared by the apps (each app stays a thin wrapper)."""

from __future__ import annotations

import logging as std_logging
import sys

import jax
from absl import flags, logging

DATA_PATH = flags.DEFINE_string(
    "data_path", None, "Data file or folder (or synthetic[:k=v,...]); overrides config.data.path."
)
WORKDIR = flags.DEFINE_string(
    "workdir", None, "Workdir: config.json, checkpoints, metrics.jsonl, report and figures."
)
DROP_INCOMPLETE = flags.DEFINE_bool(
    "drop_incomplete", False, "Drop samples with a model missing after merging (logged)."
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
        raise SystemExit("no data: give --data_path=PATH (or set config.data.path)")
    return config


def load_data_or_exit():
    """``--data_path`` loaded and validated, or exit 2 with the validation message."""
    from absl import app

    from jaxroute.data import DataError, load_data

    if not DATA_PATH.value:
        raise app.UsageError("--data_path is required")
    try:
        return load_data(DATA_PATH.value, DATA_FORMAT.value, drop_incomplete=DROP_INCOMPLETE.value)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


class _QuietLibraries(std_logging.Filter):
    """Drops orbax's per-save INFO lines (warnings and errors still show)."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or "orbax" not in record.pathname


def start(config=None):
    """Quiet library chatter, multi-host init when asked, then log the devices."""
    logging.get_absl_handler().addFilter(_QuietLibraries())
    if config is not None and config.devices.distributed:
        jax.distributed.initialize()
    logging.info("JAX process %d/%d", jax.process_index(), jax.process_count())
    logging.info("JAX devices: %s", jax.devices())
