r"""Rebuilds the report of a workdir from its checkpoints (optionally on other data).

    python -m jaxroute.launch.evaluate --workdir=workdirs/equirouter_synthetic
    python -m jaxroute.launch.evaluate --workdir=W --data_path=OTHER --output_dir=W2

With ``--data_path`` the whole of that data is the test set of every seed.
"""

from absl import app, flags

from jaxroute.launch import common
from jaxroute.train import experiment

_WORKDIR = common.WORKDIR
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where the report goes (default: workdir).")
_SPLIT = flags.DEFINE_enum(
    "split",
    None,
    ["test", "val", "train"],
    "Evaluate on this part (train: collapse on the "
    "training split); default: the run's config.eval.split.",
)


def main(argv):
    if not _WORKDIR.value:  # checked here: a global "required" would bind every app
        raise app.UsageError("--workdir is required")
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    common.start()
    config = experiment.read_config(_WORKDIR.value)
    if _SPLIT.value:
        config.eval.split = _SPLIT.value
    test = None
    if common.DATA_PATH.value:
        other = experiment.config_with_data(
            config, common.DATA_PATH.value, common.DATA_FORMAT.value
        )
        test = experiment.load_experiment_data(other)
    report = experiment.evaluate(config, _WORKDIR.value, test_data=test, output_dir=_OUTPUT.value)
    print(report["headline"])
    print(f"report: {report['paths']}")


if __name__ == "__main__":
    common.run(main)
