"""Calibrating a trained workdir to a target, and reading the calibration back.

``calibrate_workdir`` rebuilds one router's scores and predicted costs on the workdir's
calibration split, computes the rule's exact calibration curve
(:mod:`jaxroute.routing.calibrate`), stores it in ``workdir/calibration.json`` and
reports the chosen parameter's realised value on the test split.

The calibration split is the validation part the trainer holds back from the training
split (``config.train.val_fraction > 0``): the routers and the cost model never train
on it (the trainer only logs a validation loss on it), and it is disjoint from the
test split. A workdir trained without one is refused unless ``split="train"`` is
asked for explicitly: the training prompts were fitted, so their scores are
optimistic and the calibrated parameter drifts more on new prompts; the report then
says ``"split": "train"``.

The stored curve holds every piece of the rule on the calibration split, so ``route``
and ``serve`` resolve any later ``target_cost`` / ``target_share`` / ``target_quality``
exactly without the data.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from jaxroute import _io
from jaxroute import routing as jrouting
from jaxroute import train as jtrain
from jaxroute.models import router_spec
from jaxroute.routing import calibrate as rcal
from jaxroute.routing.sweep import SweepResult
from jaxroute.train import _guard  # the workdir's one-writer lock
from jaxroute.train import evaluation as jeval

CALIBRATION_FILE = "calibration.json"
FORMAT = 1
SPLITS = ("val", "train")


def curve_key(router: str, seed: int, rule: str) -> str:
    return f"{router}/seed{seed}/{rule}"


def calibration_scores(workdir, *, router: str | None = None, seed_index: int = 0, split="val"):
    """Scores, predicted costs, quality and cost of one router on ``split`` and on test.

    ``router``: any router of the run (default: the first, the report's first row); a
    trained one is restored from its checkpoints, a fit/predict one (kNN, ``best``) from
    its stored state (fitted and stored now if the workdir has none).

    Returns:
      ``(info, cal, test)``: ``info`` names router, seed, models, sizes; ``cal`` and
      ``test`` are ``(scores, pred_costs, quality, cost)`` tuples of ``[N, M]`` arrays.
    """
    workdir = pathlib.Path(workdir)
    config = jtrain.read_config(workdir)
    names = jtrain.router_names(config)
    name = router or names[0]
    if name not in names:
        raise ValueError(f"router '{router}' is not a router of {workdir}: {names}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got '{split}'")
    if split == "val" and not config.train.val_fraction > 0:
        raise ValueError(
            f"{workdir}: trained without a held-back calibration part "
            "(config.train.val_fraction=0); retrain with --config.train.val_fraction=0.2 "
            "(the routers never see it), or pass --split=train to calibrate on the "
            "training prompts (optimistic: they were fitted)"
        )
    seeds = [int(s) for s in config.seeds]
    if not 0 <= seed_index < len(seeds):
        raise ValueError(f"seed_index={seed_index} out of range for seeds {seeds}")
    data = jtrain.load_experiment_data(config)
    data = _guard.check_fingerprint(workdir, data, reorder=True)  # the run's data, its order
    splits = jtrain.make_splits(config, data)
    rc = config.routers[name]
    parts = {}
    for part in (split, "test"):
        pc = jtrain.predicted_costs(config, splits, workdir, part)
        if router_spec(rc.model).trainable:
            scores, pred = jtrain.predict_router(name, rc, config, splits, workdir, pc, part)
        else:
            fitted = jtrain.Fitted(splits, {})
            scores, pred = jeval.router_predictions(name, rc, fitted, pc, part, store=workdir)
        d = getattr(splits, part)[seed_index]
        parts[part] = (
            np.asarray(scores[seed_index], np.float32),
            np.asarray(pred[seed_index], np.float32),
            np.asarray(d.quality, np.float32),
            np.asarray(d.cost, np.float32),
        )
    models = list(data.models)
    cal_cost = parts[split][3]
    if config.eval.strong_model:
        strong = config.eval.strong_model
        if strong not in models:
            raise ValueError(f"config.eval.strong_model '{strong}' not in {models}")
    else:
        strong = models[jrouting.strong_model(cal_cost, parts[split][2])]  # the report's rule
    info = {
        "router": name,
        "seed": seeds[seed_index],
        "seed_index": seed_index,
        "split": split,
        "models": models,
        "strong_model": strong,
        "n_calibration": int(cal_cost.shape[0]),
        "n_test": int(parts["test"][3].shape[0]),
    }
    return info, parts[split], parts["test"]


# --------------------------------------------------------------------------- storage


def _curve_json(info: dict, rule: str, curve: SweepResult) -> dict:
    n = info["n_calibration"]
    counts = np.rint(np.asarray(curve.shares) * n).astype(np.int64)
    return {
        **{k: info[k] for k in ("router", "seed", "seed_index", "split", "models")},
        "strong_model": info["strong_model"],
        "rule": rule,
        "n": n,
        "parameter": [float(x) for x in curve.budget],
        "quality": [float(x) for x in curve.quality],
        "cost": [float(x) for x in curve.cost],
        "share_counts": counts.tolist(),
    }


def _curve_from_json(entry: dict) -> SweepResult:
    n = entry["n"]
    return SweepResult(
        np.asarray(entry["parameter"], np.float64),
        np.asarray(entry["quality"], np.float64),
        np.asarray(entry["cost"], np.float64),
        np.asarray(entry["share_counts"], np.float64) / n,
    )


def read_calibration(workdir) -> dict:
    """``workdir/calibration.json`` (``{}`` when the workdir was never calibrated)."""
    path = pathlib.Path(workdir) / CALIBRATION_FILE
    if not path.exists():
        return {}
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e}); rerun calibrate") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "curves" not in obj:
        raise ValueError(f"{path}: field 'format' is not {FORMAT}; rerun calibrate")
    return obj


# --------------------------------------------------------------------------- the app


def calibrate_workdir(
    workdir,
    *,
    kind: str,
    target: float,
    rule: str = "budget",
    router: str | None = None,
    model: str | None = None,
    seed_index: int = 0,
    split: str = "val",
    n_resamples: int = 2000,
    bootstrap_seed: int = 0,
) -> dict:
    """Calibrates ``rule`` of one router to a target, stores the curve, reports on test.

    Args:
      workdir: a trained workdir.
      kind: ``"cost"`` (USD mean per prompt), ``"share"`` (of ``model``) or ``"quality"``.
      target: the target value.
      rule: ``"budget"`` or ``"lambda"``.
      router: router name (default: the workdir's first, the report's first row).
      model: the model whose share is targeted (default: the strong model, i.e.
        ``config.eval.strong_model`` or the best-quality model of the top price tier on
        the calibration split, as in the report).
      seed_index: which of the workdir's seeds (each has its own split and router).
      split: ``"val"`` (the held-back part) or ``"train"`` (explicit opt-in).
      n_resamples: bootstrap resamples for the test interval.
      bootstrap_seed: the bootstrap's seed.

    Returns:
      The report (also stored as ``last`` in calibration.json).

    Raises:
      WorkdirBusy: a training run holds the workdir (calibrate writes calibration.json
        under the workdir's lock, so it is its only writer).
    """
    if kind not in rcal.TARGETS:
        raise ValueError(f"target must be one of {sorted(rcal.TARGETS)}, got '{kind}'")
    if rule not in rcal.RULES:
        raise ValueError(f"rule must be one of {rcal.RULES}, got '{rule}'")
    check_target(kind, target)
    workdir = pathlib.Path(workdir)
    if not (workdir / "config.json").exists():
        raise FileNotFoundError(f"{workdir}: no config.json; is this a trained workdir?")
    with _guard.workdir_lock(workdir):  # no training run writes it meanwhile
        existing = read_calibration(workdir)  # fail on a corrupt file before the work
        info, cal, test = calibration_scores(
            workdir, router=router, seed_index=seed_index, split=split
        )
        m = _model_index(info, model, kind)
        choice, curve = rcal.calibrate(*cal, rule=rule, kind=kind, target=target, model=m)
        on_test = rcal.realised(*test, choice, n_resamples=n_resamples, seed=bootstrap_seed)
        report = {
            "target": float(target),
            "realised": on_test["realised"],
            "ci_low": on_test["ci_low"],
            "ci_high": on_test["ci_high"],
            "drift": on_test["drift"],
            "rule": rule,
            "parameter": choice.parameter,
            "kind": kind,
            "model": info["models"][m] if kind == "share" else None,
            "router": info["router"],
            "seed": info["seed"],
            "calibration_split": info["split"],
            "n_calibration": info["n_calibration"],
            "calibration_value": choice.calibration_value,
            "calibration_quality": choice.calibration_quality,
            "calibration_cost": choice.calibration_cost,
            "n_pieces": choice.n_pieces,
            "n_test": on_test["n"],
            "test_quality": on_test["quality"],
            "test_cost": on_test["cost"],
            "bootstrap": {"resamples": n_resamples, "seed": bootstrap_seed, "level": 0.95},
            "warnings": rcal.calibration_warnings(
                curve,
                kind=kind,
                target=target,
                model=m,
                n_calibration=info["n_calibration"],
                ci=(on_test["ci_low"], on_test["ci_high"]),
            ),
        }
        obj = existing or {"format": FORMAT, "curves": {}}
        obj["curves"][curve_key(info["router"], info["seed"], rule)] = _curve_json(
            info, rule, curve
        )
        obj["last"] = report
        _io.atomic_write_json(workdir / CALIBRATION_FILE, obj, indent=None)
    return report


def check_target(kind: str, target) -> float:
    """Validates a target value (one line naming the field)."""
    if isinstance(target, bool) or not isinstance(target, int | float):
        raise ValueError(f"target_{kind} must be a number, got {target!r}")
    t = float(target)
    if not np.isfinite(t):
        raise ValueError(f"target_{kind} must be finite, got {target!r}")
    if kind == "cost" and t <= 0:
        raise ValueError(f"target_cost must be > 0 USD, got {target!r}")
    if kind == "share" and not 0.0 <= t <= 1.0:
        raise ValueError(f"target_share must be in [0, 1], got {target!r}")
    return t


def _model_index(info: dict, model: str | None, kind: str) -> int:
    models = info["models"]
    if model is None:
        return models.index(info["strong_model"])
    if kind != "share":
        raise ValueError(f"--model only applies to target_share, not target_{kind}")
    if model not in models:
        raise ValueError(f"model '{model}' is not one of the workdir's models {models}")
    return models.index(model)


def resolve_target(
    calibration: dict,
    *,
    workdir,
    router: str,
    seed: int,
    kind: str,
    target: float,
    rule: str = "budget",
    model: str | None = None,
) -> rcal.Calibration:
    """The rule parameter for a target, from a stored calibration curve (no data)."""
    check_target(kind, target)
    if rule not in rcal.RULES:
        raise ValueError(f"rule must be one of {rcal.RULES}, got '{rule}'")
    key = curve_key(router, seed, rule)
    entry = (calibration or {}).get("curves", {}).get(key)
    if entry is None:
        raise ValueError(
            f"{workdir}: not calibrated for router '{router}', seed {seed}, rule '{rule}'; "
            f"run python -m jaxroute.launch.calibrate --workdir={workdir} --router={router} "
            f"--rule={rule} --target_{kind}={target}"
        )
    info = {"models": entry["models"], "strong_model": entry["strong_model"]}
    m = _model_index(info, model, kind)
    return rcal.from_curve(_curve_from_json(entry), rule=rule, kind=kind, target=target, model=m)


__all__ = [
    "CALIBRATION_FILE",
    "calibrate_workdir",
    "calibration_scores",
    "check_target",
    "curve_key",
    "read_calibration",
    "resolve_target",
]
