r"""Rebuilds the report of a workdir from its checkpoints (optionally on other data).

    python -m jaxroute.launch.evaluate --workdir=workdirs/equirouter_synthetic
    python -m jaxroute.launch.evaluate --workdir=W --data_path=OTHER --output_dir=W2

With ``--data_path`` the whole of that data is the test set of every seed. Prints the
headline table (both decision rules side by side) and where the report went; ``--json``
prints one JSON object instead (the report's metrics per router and rule, no curves).
"""

import contextlib
import os

from absl import app, flags

from jaxroute.launch import common
from jaxroute.train import _guard, experiment

_WORKDIR = common.WORKDIR
_JSON = common.define_json()
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where the report goes (default: workdir).")
_SPLIT = flags.DEFINE_enum(
    "split",
    None,
    ["test", "val", "train"],
    "Evaluate on this part (train: collapse on the "
    "training split); default: the run's config.eval.split.",
)


def _without_curves(entry):
    """A report entry without curves and per-seed lists (the --json summary)."""
    out = {k: v for k, v in entry.items() if k not in ("curve", "seeds", "lambda")}
    if isinstance(entry.get("lambda"), dict):
        out["lambda"] = _without_curves(entry["lambda"])
    return out


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value:  # checked here: a global "required" would bind every app
        raise app.UsageError("--workdir is required")
    # Input checks before anything is loaded.
    if not os.path.isfile(os.path.join(_WORKDIR.value, "config.json")):
        raise FileNotFoundError(f"--workdir={_WORKDIR.value}: no config.json (not a trained run)")
    path = common.DATA_PATH.value
    if path and not path.startswith("synthetic") and not os.path.exists(path):
        raise FileNotFoundError(f"--data_path: no such file or folder: {path}")
    common.start()
    config = experiment.read_config(_WORKDIR.value)
    if _SPLIT.value:
        config.eval.split = _SPLIT.value
    test = None
    if path:
        other = experiment.config_with_data(config, path, common.DATA_FORMAT.value)
        common.progress(f"loading {path}")
        test = experiment.load_experiment_data(other)
    common.progress("evaluating the checkpoints (both decision rules)")
    # Writing the report into the workdir makes evaluate its writer: hold its lock.
    out = _OUTPUT.value
    writes = not out or os.path.realpath(out) == os.path.realpath(_WORKDIR.value)
    with _guard.workdir_lock(_WORKDIR.value) if writes else contextlib.nullcontext():
        report = experiment.evaluate(
            config, _WORKDIR.value, test_data=test, output_dir=_OUTPUT.value
        )
    if _JSON.value:
        common.print_json(
            {
                "routers": {k: _without_curves(v) for k, v in report["routers"].items()},
                "reference": {k: _without_curves(v) for k, v in report["reference"].items()},
                "paths": report["paths"],
            }
        )
        return
    print(report["headline"])
    common.print_paths(report["paths"])


if __name__ == "__main__":
    common.run(main)
