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
from jaxroute.launch import common, policy_flags

_WORKDIR = common.WORKDIR
_POLICY = policy_flags.define_policy_flags(targets_only=True)
_ROUTER = policy_flags.define_router_flags()
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
    try:
        kind, target = _POLICY.target()
        spec = _POLICY.spec()
        report = serving.calibrate_workdir(
            _WORKDIR.value,
            kind=kind,
            target=target,
            rule=spec["rule"] or policy_flags.RULES[0],
            router=_ROUTER.router.value,
            model=spec["model"],
            seed_index=_ROUTER.seed_index.value,
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
    for line in report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    print(json.dumps(report))


if __name__ == "__main__":
    common.run(main)
