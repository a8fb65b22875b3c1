r"""Trains every configured router over K seeds, sweeps budgets, writes the report.

    python -m jaxroute.launch.train --flagfile=launch/equirouter_synthetic.flags

Flags after ``--flagfile`` win (e.g. ``--config.train.epochs=10``). A restarted run
resumes from the checkpoints in ``--workdir``.
"""

from absl import app
from ml_collections import config_flags

from jaxroute.launch import common
from jaxroute.train import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config", "jaxroute/configs/base.py", "Experiment config file.", lock_config=True
)
_WORKDIR = common.WORKDIR


def main(argv):
    if not _WORKDIR.value:  # checked here: a global "required" would bind every app
        raise app.UsageError("--workdir is required")
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = common.apply_data_flags(_CONFIG.value)
    common.start(config)
    report = train_and_evaluate(config, _WORKDIR.value)  # errors: common.run's exit codes
    print(report["headline"])
    print(f"report: {report['paths']}")


if __name__ == "__main__":
    common.run(main)
