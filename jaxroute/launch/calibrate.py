r"""Calibrates a trained workdir's decision rule to a target; reports it on the test split.

    python -m jaxroute.launch.calibrate --workdir=W --target_share=0.2
    python -m jaxroute.launch.calibrate --workdir=W --target_cost=0.0005 --rule=lambda
    python -m jaxroute.launch.calibrate --workdir=W --target_quality=0.7 --router=mlp

The parameter (budget or λ) is chosen exactly on the calibration split (the part of the
training split held back by ``--config.train.val_fraction``; never the test split) and
the rule's whole calibration curve is stored in ``W/calibration.json``, so ``route`` and
``serve`` then take any ``--target_*``. The last stdout line is one JSON object:
``target``, ``realised`` (on the test split), ``ci_low`` / ``ci_high`` (bootstrap 95%),
``drift`` (realised - target), ``rule``, ``parameter``, ``model``, and more.
"""

import json
import sys

from absl import app, flags

from jaxroute import serving
from jaxroute.launch import common  # noqa: F401  (shared flags)

_WORKDIR = common.WORKDIR
_TARGET_COST = flags.DEFINE_float("target_cost", None, "Target mean USD cost per prompt.")
_TARGET_SHARE = flags.DEFINE_float(
    "target_share", None, "Target share of prompts sent to --model (at most)."
)
_TARGET_QUALITY = flags.DEFINE_float(
    "target_quality", None, "Target mean quality, reached at the lowest calibration cost."
)
_RULE = flags.DEFINE_enum("rule", "budget", ["budget", "lambda"], "Decision rule to calibrate.")
_ROUTER = flags.DEFINE_string("router", None, "Router name (default: the workdir's first).")
_MODEL = flags.DEFINE_string("model", None, "--target_share's model (default: the strongest).")
_SEED_INDEX = flags.DEFINE_integer("seed_index", 0, "Which of the K seeds' routers to use.")
_SPLIT = flags.DEFINE_enum(
    "split",
    "val",
    ["val", "train"],
    "Calibration split: val (held back, needs train.val_fraction > 0) or train (fitted).",
)
_RESAMPLES = flags.DEFINE_integer("resamples", 2000, "Bootstrap resamples for the interval.")
_BOOT_SEED = flags.DEFINE_integer("bootstrap_seed", 0, "Seed of the bootstrap.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    given = {
        k: f.value
        for k, f in (("cost", _TARGET_COST), ("share", _TARGET_SHARE), ("quality", _TARGET_QUALITY))
        if f.value is not None
    }
    try:
        if len(given) != 1:
            raise ValueError("give exactly one of --target_cost, --target_share, --target_quality")
        ((kind, target),) = given.items()
        report = serving.calibrate_workdir(
            _WORKDIR.value,
            kind=kind,
            target=target,
            rule=_RULE.value,
            router=_ROUTER.value,
            model=_MODEL.value,
            seed_index=_SEED_INDEX.value,
            split=_SPLIT.value,
            n_resamples=_RESAMPLES.value,
            bootstrap_seed=_BOOT_SEED.value,
        )
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{report['router']} {report['rule']} rule, target_{kind}={target:g}: parameter "
        f"{report['parameter']:.6g} gives {report['calibration_value']:.6g} on the "
        f"{report['calibration_split']} split (n={report['n_calibration']}), "
        f"{report['realised']:.6g} [{report['ci_low']:.6g}, {report['ci_high']:.6g}] on test "
        f"(n={report['n_test']}), drift {report['drift']:+.3g}"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    common.run(main)
