r"""Trains every configured router over K seeds, sweeps both decision rules, writes the report.

    python -m jaxroute.launch.train --flagfile=launch/equirouter_synthetic.flags
    jaxroute train --config=base:tiny --workdir=/tmp/w        # the installed command
    jaxroute train --config=base:tiny --workdir=/tmp/w \
        --config.routers.hinge.model=equirouter --config.routers.hinge.loss=pairwise_hinge \
        --config.routers.hinge.hparams.margin='(0.5,1,2)'     # a new router, a 3-value grid

Flags after ``--flagfile`` replace its values, whole (``--config.seeds='(42,43)'``);
``--config_help`` lists every config field with its default, every loss keyword and
router kind. The config is checked before anything is written (a typo, an unknown key
or a bad value is one line, exit code 2). A restarted run resumes from the checkpoints
in ``--workdir``; a workdir holding a run with another config is refused.
"""

import os

from absl import app, flags

from jaxroute.launch import common
from jaxroute.train import experiment

_CONFIG = common.define_config("config")
_CONFIG_HELP = flags.DEFINE_bool(
    "config_help",
    False,
    "List every config field with its default, the losses' keyword arguments and the "
    "router kinds, and exit.",
)
_WORKDIR = common.WORKDIR


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG_HELP.value:
        print(common.config_help(_CONFIG.unchecked()))
        return
    if not _WORKDIR.value:  # checked here: a global "required" would bind every app
        raise app.UsageError("--workdir is required")
    # Input checks before anything is loaded, trained or written.
    config = common.apply_data_flags(_CONFIG.value)
    path = config.data.path
    if not path.startswith("synthetic") and not os.path.exists(path):
        raise FileNotFoundError(f"--data_path / config.data.path: no such file or folder: {path}")
    experiment.check_resumable(config, _WORKDIR.value)
    common.start(config)
    report = experiment.train_and_evaluate(config, _WORKDIR.value)  # errors: exit codes
    print(report["headline"])
    if report["paths"]:
        common.print_paths(report["paths"])
    else:  # a JAX process other than 0: process 0 wrote the report
        print("report: written by JAX process 0")


if __name__ == "__main__":
    common.run(main)
