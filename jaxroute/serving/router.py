"""Routes new prompts with a trained workdir's router (the ``route`` and ``serve`` library).

A :class:`TrainedRouter` holds one router of one seed, compiled once: a trained router
(restored from its checkpoints) with the cost model, or a fit/predict router (kNN,
``best``: its state restored from ``<workdir>/fitted``, see
:mod:`jaxroute.models.fitted`) with its own cost estimates or the cost model's.
:meth:`TrainedRouter.embed` runs the sentence encoder,
:meth:`TrainedRouter.scores_and_costs` the router (rows padded to a power of two, so a
handful of shapes compile), and :meth:`TrainedRouter.decide` applies a :class:`Policy`:
a budget, a willingness to pay, or a calibrated target (``target_cost`` /
``target_share`` / ``target_quality``, resolved from the workdir's calibration curve,
see :mod:`jaxroute.serving.calibration`).

Without a router name, :func:`load_router` takes the run's headline router: the first
of ``train.router_names(config)`` (``config.run_routers`` when set, else the configured
routers in the config's order, by name), the first row of the run's report.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxroute import encoders
from jaxroute import routing as jrouting
from jaxroute.models import fitted as jfitted
from jaxroute.models import router_spec
from jaxroute.routing import calibrate as rcal
from jaxroute.serving import calibration as scal
from jaxroute.train import _guard
from jaxroute.train import experiment as E

POLICY_FIELDS = (
    *(r.flag for r in jrouting.RULES.values()),
    *(f"target_{kind}" for kind in rcal.TARGETS),
)


def read_prompts_file(path) -> list[str]:
    """JSON lines: each a string or an object with a ``prompt`` field."""
    p = pathlib.Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such prompts file")
    prompts = []
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: line {i} is not JSON ({e})") from None
        if isinstance(obj, dict):
            if "prompt" not in obj:
                raise ValueError(f"{p}: line {i}: object without a 'prompt' field")
            obj = obj["prompt"]
        if not isinstance(obj, str):
            raise ValueError(f"{p}: line {i}: prompt is {type(obj).__name__}, not a string")
        if not obj.strip():
            raise ValueError(f"{p}: line {i}: the prompt is empty or whitespace only")
        prompts.append(obj)
    return prompts


def check_prompts(prompts: Any, *, max_chars: int | None = None) -> list[str]:
    """A non-empty list of non-blank strings (one line naming the bad prompt)."""
    if isinstance(prompts, str) or not isinstance(prompts, list | tuple):
        raise ValueError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if not prompts:
        raise ValueError("no prompts: give at least one")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ValueError(f"prompt {i} is {type(p).__name__}, not a string")
        if not p.strip():
            raise ValueError(f"prompt {i} is empty or whitespace only")
        if max_chars is not None and len(p) > max_chars:
            raise ValueError(f"prompt {i} has {len(p)} characters, more than {max_chars}")
    return list(prompts)


@dataclasses.dataclass(frozen=True)
class Policy:
    """How to pick a model from scores and predicted costs.

    Attributes:
      rule: ``"budget"`` (parameter = USD per prompt) or ``"lambda"`` (parameter = λ).
      parameter: the rule's parameter.
      target: ``{"kind", "value", "model", "calibration_value"}`` for a calibrated
        target, else None.
    """

    rule: str
    parameter: float
    target: dict | None = None

    def describe(self) -> dict:
        out = {"rule": self.rule, "parameter": self.parameter}
        if self.target is not None:
            out["target"] = self.target
        return out


def policy_fields(spec: dict) -> dict:
    """The policy fields of a request or of flags, checked (one line naming the field)."""
    given = {k: spec[k] for k in POLICY_FIELDS if spec.get(k) is not None}
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of {', '.join(POLICY_FIELDS)}; got {sorted(given) or 'none'}"
        )
    ((field, value),) = given.items()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    jrouting.rules.check_flag(field, value)
    if field.startswith("target_"):
        scal.check_target(field.removeprefix("target_"), value)
    rule, model = spec.get("rule"), spec.get("model")
    if rule is not None and not field.startswith("target_"):
        raise ValueError(f"rule only applies to a target, not to {field}")
    if rule is not None:
        jrouting.get_rule(rule)  # one line naming the known rules
    if model is not None and field != "target_share":
        raise ValueError(f"model only applies to target_share, not to {field}")
    if model is not None and not isinstance(model, str):
        raise ValueError(f"model must be a model name, got {model!r}")
    return {
        "field": field,
        "value": float(value),
        "rule": rule or jrouting.rules.PRIMARY,
        "model": model,
    }


@dataclasses.dataclass
class TrainedRouter:
    """One trained router (one seed) with the cost model, ready to route prompts."""

    name: str
    models: list[str]
    predict_fn: Any  # features [N, D] -> (scores [N, M], predicted costs [N, M])
    encoder_dir: str | None
    prompt_view: str = "full"
    encoder_dtype: str = "float32"
    seed: int = 0
    workdir: str = ""
    calibration: dict = dataclasses.field(default_factory=dict)
    feature_dim: int = 0
    _encoder: Any = None
    _policies: dict = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ pieces
    @property
    def encoder(self):
        """The sentence encoder (loaded on first use, then kept)."""
        if self._encoder is None:
            self._encoder = encoders.cached_encoder(self.encoder_dir, self.encoder_dtype)
        return self._encoder

    def embed(self, prompts: Sequence[str], *, batch_size: int = 32):
        """``([N, D] features, [N] truncated)``: the encoder's vectors of the prompts."""
        viewed = encoders.apply_view(list(prompts), self.prompt_view)
        enc = self.encoder
        x = enc(viewed, batch_size=batch_size, progress=False)
        truncated = np.array(
            [bool(e.overflowing) for e in enc.tokenizer.encode_batch(viewed)], bool
        )
        return x, truncated

    def scores_and_costs(self, features) -> tuple[np.ndarray, np.ndarray]:
        """Scores and predicted costs ``[N, M]``; rows padded to a power of two inside."""
        x = np.asarray(features, np.float32)
        n = x.shape[0]
        size = 1 << max(0, (n - 1).bit_length())
        if size != n:
            x = np.concatenate([x, np.zeros((size - n, x.shape[1]), np.float32)])
        scores, costs = self.predict_fn(x)
        return np.asarray(scores)[:n], np.asarray(costs)[:n]

    def warmup(self, max_rows: int = 32, lengths=None) -> None:
        """Compiles every shape routing can meet: the encoder for each token bucket and
        each power-of-two row count up to its batch there (the encoder's partial batches
        are powers of two), and the two networks for powers of two up to ``max_rows``."""
        enc = self.encoder
        for length in lengths or enc.buckets:
            rows = 1
            while rows <= max_rows:  # the encoder caps rows by its token budget per call
                enc.warmup(rows, [length])
                rows *= 2
        rows = 1
        while rows <= max_rows:
            self.scores_and_costs(np.zeros((rows, enc.dim), np.float32))
            rows *= 2

    # ------------------------------------------------------------------ policy
    def policy(self, spec: dict) -> Policy:
        """A :class:`Policy` from ``budget`` / ``wtp`` / ``target_*`` (+ ``rule``, ``model``)."""
        f = policy_fields(spec)
        key = tuple(sorted(f.items()))
        if key not in self._policies:  # a target's curve is read once per target
            if len(self._policies) > 1024:
                self._policies.clear()
            self._policies[key] = self._policy(f)
        return self._policies[key]

    def _policy(self, f: dict) -> Policy:
        r = jrouting.rules.rule_of_flag(f["field"])
        if r is not None:
            return Policy(r.name, f["value"])
        kind = f["field"].removeprefix("target_")
        cal = scal.resolve_target(
            self.calibration,
            workdir=self.workdir,
            router=self.name,
            seed=self.seed,
            kind=kind,
            target=f["value"],
            rule=f["rule"],
            model=f["model"],
        )
        target = {
            "kind": kind,
            "value": f["value"],
            "calibration_value": cal.calibration_value,
        }
        if kind == "share":
            target["model"] = self.models[cal.model]
        return Policy(cal.rule, cal.parameter, target)

    def decide(self, prompts, scores, costs, policy: Policy, truncated=None) -> list[dict]:
        """One output object per prompt (what ``route`` prints and ``/route`` returns)."""
        scores = np.asarray(scores, np.float32)
        costs = np.asarray(costs, np.float32)
        p = np.float32(policy.parameter)
        rule = jrouting.get_rule(policy.rule)
        choice = rule.choose(scores, costs, p)
        over = np.asarray(rule.infeasible(costs, p))
        if truncated is None:
            truncated = np.zeros(len(choice), bool)
        out = []
        for i, prompt in enumerate(prompts):
            j = int(choice[i])
            row = {
                "prompt": prompt,
                "router": self.name,
                "model": self.models[j],
                "predicted_cost": float(costs[i, j]),
                **policy.describe(),
                "over_budget": bool(over[i]),
                "truncated": bool(truncated[i]),
                "scores": {m: float(s) for m, s in zip(self.models, scores[i], strict=True)},
                "predicted_costs": {
                    m: float(c) for m, c in zip(self.models, costs[i], strict=True)
                },
            }
            out.append(row)
        return out

    def route(self, prompts, *, budget=None, wtp=None, **targets) -> list[dict]:
        """Embeds and routes ``prompts``: ``budget=``, ``wtp=`` or a ``target_*=`` value.

        ``targets`` may hold ``target_cost``, ``target_share``, ``target_quality``, and
        ``rule`` / ``model`` for them (a calibrated workdir, see ``calibrate``).
        """
        prompts = check_prompts(list(prompts))
        policy = self.policy({"budget": budget, "wtp": wtp, **targets})
        x, truncated = self.embed(prompts)
        scores, costs = self.scores_and_costs(x)
        return self.decide(prompts, scores, costs, policy, truncated)


def headline_router(config) -> str:
    """The router ``route`` and ``serve`` take by default: the first of the run's routers
    (``config.run_routers`` when set, else the configured ones in the config's order)."""
    return E.router_names(config)[0]


def load_router(workdir, *, router: str | None = None, seed_index: int = 0) -> TrainedRouter:
    """Restores router ``router`` (default: :func:`headline_router`) of seed ``seed_index``.

    Any router of the run: a trained one from its checkpoints, a fit/predict one (kNN,
    ``best``) from the state ``evaluate`` stored in ``<workdir>/fitted``.
    """
    workdir = pathlib.Path(workdir)
    _guard.ensure_not_training(workdir)  # reads only; refuses a workdir still training
    config = E.read_config(workdir)
    info_path = workdir / "run_info.json"
    if not info_path.exists():
        raise FileNotFoundError(f"{workdir}: no run_info.json; is this a trained workdir?")
    info = json.loads(info_path.read_text())
    if config.features.source != "encoder":
        raise ValueError(
            f"{workdir}: its routers were trained on '{config.features.source}' features "
            f"({info['feature_dim']}-d), not on the sentence encoder's, so new prompts "
            "cannot be routed with them; train with --config.features.source=encoder"
        )
    names = E.router_names(config)
    name = router or headline_router(config)
    if name not in names:
        raise ValueError(f"router '{name}' is not a router of {workdir}: {names}")
    seeds = info["seeds"]
    if not 0 <= seed_index < len(seeds):
        raise ValueError(f"--seed_index={seed_index} out of range for seeds {seeds}")
    rc = config.routers[name]
    spec = router_spec(rc.model)
    shape = (seeds, info["feature_dim"], len(info["models"]), info["n_train"], workdir)
    cost_fn = None  # the cost model's prices, loaded when the router needs them

    def costs_of_the_cost_model():
        if not config.cost_model.enabled:
            raise ValueError(
                f"{workdir}: trained without a cost model; router '{name}' cannot price new prompts"
            )
        ctask, cparams = E.trained_group(
            E.COST_GROUP, config.cost_model, config, *shape, offset=E.COST_SEED_OFFSET
        )
        cparams = jax.tree.map(lambda a: a[seed_index], cparams)
        capply = jax.jit(lambda p, x: ctask.module.target_to_cost(ctask.module.apply(p, x)))
        return lambda x: capply(cparams, x)

    if spec.trainable:
        task, params = E.trained_group(name, rc, config, *shape)
        params = jax.tree.map(lambda a: a[seed_index], params)
        score_fn = jax.jit(task.module.apply)
        cost_fn = costs_of_the_cost_model()

        def predict_fn(x):
            return score_fn(params, x), cost_fn(x)

    else:
        state = _fitted_state(workdir, name, int(seeds[seed_index]), spec, rc)
        if spec.predict_with(state, np.zeros((1, info["feature_dim"]), np.float32), rc)[1] is None:
            cost_fn = costs_of_the_cost_model()

        def predict_fn(x):
            scores, costs = spec.predict_with(state, x, rc)
            return scores, (cost_fn(x) if costs is None else costs)

    return TrainedRouter(
        name=name,
        models=list(info["models"]),
        predict_fn=predict_fn,
        encoder_dir=encoders.config_encoder(config.features),
        prompt_view=config.features.get("prompt_view", "full"),
        # read_config pinned it to the mode training embedded with.
        encoder_dtype=config.features.encoder_dtype,
        seed=int(seeds[seed_index]),
        workdir=str(workdir),
        calibration=scal.read_calibration(workdir),
        feature_dim=int(info["feature_dim"]),
    )


def _fitted_state(workdir, name: str, seed: int, spec, rc):
    """A fit/predict router's stored state (one line saying how to store it if missing)."""
    try:
        state, _ = jfitted.load_state(workdir, name, seed, spec, rc)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{workdir}: router '{name}' has no stored state for seed {seed} "
            f"({jfitted.FOLDER}/{name}/); store it with: jaxroute evaluate --workdir={workdir}"
        ) from None
    except jfitted.StaleState as e:
        raise ValueError(f"{e}; refit it with: jaxroute evaluate --workdir={workdir}") from None
    return state


__all__ = [
    "POLICY_FIELDS",
    "Policy",
    "TrainedRouter",
    "check_prompts",
    "headline_router",
    "load_router",
    "policy_fields",
    "read_prompts_file",
]
