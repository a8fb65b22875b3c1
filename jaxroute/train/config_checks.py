"""Every check of an experiment config that needs no data, before anything is written.

``check_config(config)`` raises :class:`~jaxroute.configs._overrides.ConfigError` (a
ValueError; one line naming the field, the valid values and the closest one) for the
first problem it finds. ``train`` runs it on the resolved config before it creates or
writes into the workdir, and :func:`jaxroute.train.experiment.fit` runs it again for
callers that build configs in Python. Checks the data must answer (tasks, splits of the
loaded data) stay with the data (:mod:`jaxroute.train.inputs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from jaxroute import data as jdata
from jaxroute.configs._overrides import ConfigError, did_you_mean, unknown
from jaxroute.losses import LOSSES
from jaxroute.models.table import ROUTERS
from jaxroute.train._trainer import DECAYING_OPTIMIZERS, OPTIMIZERS, SCHEDULES


def _int_at_least(low: int) -> Callable[[object], str]:
    def check(v) -> str:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            return f"must be an integer >= {low}"
        return ""

    return check


def _number(low: float, high: float = math.inf, *, open_low=False, open_high=True):
    def check(v) -> str:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return "must be a finite number"
        if v < low or (open_low and v == low) or v > high or (open_high and v == high):
            lo, hi = "(" if open_low else "[", ")" if open_high else "]"
            return f"must be in {lo}{low:g}, {high:g}{hi}"
        return ""

    return check


def _one_of(choices) -> Callable[[object], str]:
    def check(v) -> str:
        if v in choices:
            return ""
        return f"must be one of {', '.join(choices)}{did_you_mean(str(v), choices)}"

    return check


def _seeds(v) -> str:
    if not isinstance(v, tuple | list) or not v:
        return "must be a non-empty tuple of integers, e.g. (42,43)"
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in v):
        return "must hold integers"
    repeated = sorted({s for s in v if list(v).count(s) > 1})
    return f"repeats {repeated} (a repeated seed trains the same copy twice)" if repeated else ""


#: Dotted field -> check returning '' or what is wrong. A field a config does not have is
#: skipped (configs may leave groups out).
FIELD_CHECKS: dict[str, Callable[[object], str]] = {
    "seeds": _seeds,
    "data.split": _one_of(jdata.SPLITS),
    "data.format": _one_of(jdata.FORMATS),
    "data.train_fraction": _number(0.0, 1.0, open_low=True, open_high=False),
    "features.source": _one_of(("data", "encoder", "file")),
    "features.batch_size": _int_at_least(1),
    "train.epochs": _int_at_least(1),
    "train.batch_size": _int_at_least(1),
    "train.learning_rate": _number(0.0, open_low=True),
    "train.optimizer": _one_of(OPTIMIZERS),
    "train.weight_decay": _number(0.0),
    "train.schedule": _one_of(SCHEDULES),
    "train.warmup_steps": _int_at_least(0),
    "train.grad_clip": _number(0.0),
    "train.val_fraction": _number(0.0, 1.0),
    "train.keep_checkpoints": _int_at_least(1),
    "eval.grid": _one_of(("orbit", "log")),
    "eval.n_budgets": _int_at_least(2),
    "eval.split": _one_of(("test", "val", "train")),
    "eval.checkpoint": _one_of(("last", "best")),
}

#: Fields of every trainable router entry.
ROUTER_CHECKS: dict[str, Callable[[object], str]] = {
    "epochs": _int_at_least(0),
    "learning_rate": _number(0.0),
}


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _check_fields(config) -> None:
    for field, check in FIELD_CHECKS.items():
        value = _get(config, field)
        if value is not _MISSING and (why := check(value)):
            raise ConfigError(f"config.{field}={value!r}: {why}")
    dc, seeds = config.get("data"), config.get("seeds")
    if dc is not None and dc.get("split") == "leave_one_task_out" and len(seeds or ()) > 1:
        raise ConfigError(
            f"config.seeds={tuple(seeds)!r} with data.split='leave_one_task_out': the "
            "held-out tasks differ in size, so give one seed (the task's index) per run, "
            "e.g. --config.seeds='(0,)', and loop over 0..T-1"
        )
    ec, tc = config.get("eval"), config.get("train")
    if ec is not None and ec.get("checkpoint") == "best" and not (tc or {}).get("val_fraction"):
        raise ConfigError(
            "config.eval.checkpoint='best' picks the epoch of lowest validation loss: set "
            "--config.train.val_fraction > 0 (a part of train held out)"
        )
    if tc is not None and tc.get("weight_decay") and tc.get("optimizer") not in DECAYING_OPTIMIZERS:
        raise ConfigError(
            f"config.train.weight_decay={tc.weight_decay} with train.optimizer="
            f"'{tc.optimizer}', which has no weight decay: use --config.train.optimizer="
            f"{DECAYING_OPTIMIZERS[0]} (or weight_decay=0)"
        )


def loss_keywords(loss: str) -> dict:
    """The keyword arguments (and defaults) ``loss_kwargs`` and ``hparams`` may set."""
    return LOSSES[loss].defaults


def check_router(where: str, rc) -> None:
    """One router entry (``routers.NAME`` or ``cost_model``)."""
    kind = rc.get("model")
    if kind not in ROUTERS:
        raise ConfigError(f"config.{where}.model: {unknown('router kind', str(kind), ROUTERS)}")
    spec = ROUTERS[kind]
    if not spec.trainable:
        return
    for field, check in ROUTER_CHECKS.items():
        if field in rc and (why := check(rc[field])):
            raise ConfigError(f"config.{where}.{field}={rc[field]!r}: {why}")
    if spec.objective is not None:  # the kind's own objective: no loss to check
        return
    loss = rc.get("loss")
    if loss not in LOSSES:
        raise ConfigError(f"config.{where}.loss: {unknown('loss', str(loss), LOSSES)}")
    keywords = loss_keywords(loss)
    for group in ("loss_kwargs", "hparams"):
        for key in rc.get(group) or {}:
            if key not in keywords:
                what = f"keyword argument of loss '{loss}'"
                valid = keywords or ["(none)"]
                raise ConfigError(f"config.{where}.{group}.{key}: {unknown(what, key, valid)}")
    hparams = dict(rc.get("hparams") or {})
    lengths = {k: len(v) if isinstance(v, tuple | list) else 1 for k, v in hparams.items()}
    if hparams and (0 in lengths.values() or len(set(lengths.values())) > 1):
        raise ConfigError(
            f"config.{where}.hparams: every keyword needs the same number (>= 1) of values; "
            f"got {lengths}"
        )


def check_config(config) -> None:
    """Every field check, every router entry, and ``run_routers``."""
    _check_fields(config)
    if "cost_model" in config:
        check_router("cost_model", config.cost_model)
    routers = config.get("routers") or {}
    for name in routers:
        check_router(f"routers.{name}", routers[name])
    names = [n.strip() for n in str(config.get("run_routers", "")).split(",") if n.strip()]
    for name in names:
        if name not in routers:
            raise ConfigError(f"config.run_routers: {unknown('router', name, routers)}")
