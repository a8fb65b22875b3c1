"""Evaluation of fitted routers: predictions, one budget sweep per seed, the report.

Everything here works on a :class:`~jaxroute.train.groups.Fitted` in memory (the
parameters ``fit`` just trained, or ones restored from checkpoints by ``evaluate``).
Routers without gradient training (``fit``/``predict`` in the router table) are fitted
here, per seed, and their states stored in the workdir (:mod:`jaxroute.models.fitted`)
so that ``route``, ``serve`` and ``calibrate`` restore them like checkpoints.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np
from absl import logging

from jaxroute import data as jdata
from jaxroute import encoders
from jaxroute import models as jmodels
from jaxroute import report as jreport
from jaxroute import routing as jrouting
from jaxroute.models import fitted as jfitted
from jaxroute.train import _distributed as dist
from jaxroute.train import _trainer as T
from jaxroute.train.groups import COST_GROUP, Fitted, hparam_variants
from jaxroute.train.inputs import stack


def predicted_costs(config, fitted: Fitted, part: str = "test") -> np.ndarray:
    """Cost-model predictions in USD ``[K, N, M]`` (or the true costs when disabled)."""
    sets = fitted.splits.part(part)
    if not config.cost_model.enabled:
        return stack(sets, "cost")
    task, params = fitted.groups[COST_GROUP]
    out = T.predict(task.module, params, stack(sets, "features"))
    return np.asarray(task.module.target_to_cost(out))


def router_predictions(name, rc, fitted: Fitted, cost_preds, part: str = "test", store=None):
    """Scores and predicted costs ``[K, N, M]`` of router ``name`` on a split part."""
    scores, costs, _ = router_outputs(name, rc, fitted, cost_preds, part, store)
    return scores, costs


def fitted_state(name, rc, train: jdata.RoutingData, seed: int, store=None):
    """The state of fit/predict router ``name`` for one seed (``train``: its training part).

    With ``store`` (a workdir) the state stored there is restored when it was fitted
    under the same config entry on as many training prompts; otherwise the router is
    fitted and (by JAX process 0) stored. ``fit`` is deterministic, so either way the
    state is the same.
    """
    spec = jmodels.router_spec(rc.model)
    if store is not None:
        try:
            state, record = jfitted.load_state(store, name, seed, spec, rc)
            if record.get("n_train") == train.num_prompts:
                return state
        except FileNotFoundError:
            pass  # not fitted yet
        except jfitted.StaleState as e:
            logging.warning("evaluate: %s seed %d: refitting (%s)", name, seed, e)
    state = spec.fit_state(train, rc)
    if store is not None and dist.is_main():
        size = jfitted.save_state(store, name, seed, spec, state, rc, n_train=train.num_prompts)
        logging.info("evaluate: %s seed %d: state stored (%d bytes of arrays)", name, seed, size)
    return state


def router_outputs(name, rc, fitted: Fitted, cost_preds, part: str = "test", store=None):
    """:func:`router_predictions` and the choices ``fit`` made, one record per seed.

    ``store``: the workdir whose stored states fit/predict routers restore (and where
    they store the ones they fit, see :func:`fitted_state`); None fits in memory only.

    Returns ``(scores, costs, choices)``: ``choices`` is None for a router whose spec
    records none (every trainable one), else a list ``[{"seed": s, **choices}, ...]``
    of :meth:`~jaxroute.models.RouterSpec.fitted_choices` in seed order.
    """
    splits = fitted.splits
    sets = splits.part(part)
    spec = jmodels.router_spec(rc.model)
    if spec.trainable:
        task, params = fitted.groups[name]
        x = stack(sets, "features")
        copies = jax.tree.leaves(params)[0].shape[0]  # H hparam variants x K seeds
        x = np.concatenate([x] * (copies // len(x))) if copies != len(x) else x
        return T.predict(task.module, params, x), cost_preds, None
    scores, costs, choices = [], [], []
    for k, (train, s) in enumerate(zip(splits.train, sets, strict=True)):
        state = fitted_state(name, rc, train, splits.seeds[k], store)
        q, c = spec.predict_with(state, s.features, rc)
        scores.append(np.asarray(q))
        costs.append(cost_preds[k] if c is None else np.asarray(c))
        choices.append(spec.fitted_choices(state))
    if all(ch is None for ch in choices):
        choices = None
    else:
        choices = [
            {"seed": seed, **(ch or {})} for seed, ch in zip(splits.seeds, choices, strict=True)
        ]
    return np.stack(scores), np.stack(costs), choices


def strong_model_index(config, models) -> int | None:
    """``config.eval.strong_model`` as an index; None when unset: each seed's sweep then
    tracks the rule's model, the best-quality model among those that share the highest
    mean cost (:data:`jaxroute.routing.STRONG_MODEL_RULE`, docs/method.md §2)."""
    if not config.eval.strong_model:
        return None
    if config.eval.strong_model not in models:
        raise ValueError(f"config.eval.strong_model '{config.eval.strong_model}' not in {models}")
    return models.index(config.eval.strong_model)


def evaluate_fitted(
    config, fitted: Fitted, data: jdata.RoutingData, names, output_dir, *, workdir=None
) -> dict:
    """Sweeps every router of ``names`` on ``config.eval.split`` and writes the report.

    Each seed's routers are swept together (one ``[R, N, M]`` call); ``data`` is what the
    dataset summary describes (the evaluated data). Fit/predict routers' states are
    restored from, or stored in, ``workdir`` (default: ``output_dir``).
    """
    splits = fitted.splits
    models = list(data.models)
    strong = strong_model_index(config, models)
    budgets = (config.eval.grid, int(config.eval.n_budgets))
    part = config.eval.get("split", "test")
    evaluated = splits.part(part)
    cost_preds = predicted_costs(config, fitted, part)
    store = pathlib.Path(workdir if workdir is not None else output_dir)
    preds = {}  # report name -> ([K, N, M] scores, [K, N, M] predicted costs)
    choices = {}  # report name -> the per-seed choices of fit (routers that record them)
    for i, name in enumerate(names):
        logging.info("evaluate: %s (%d/%d), predictions", name, i + 1, len(names))
        rc = config.routers[name]
        scores, pred_cost, chosen = router_outputs(name, rc, fitted, cost_preds, part, store)
        suffixes, _ = hparam_variants(rc)
        if chosen is not None and suffixes == [""]:
            choices[name] = chosen
        k = len(evaluated)
        for i, suffix in enumerate(suffixes):  # H variants x K seeds, variant-major
            cut = slice(i * k, (i + 1) * k)
            preds[name + suffix] = (scores[cut], pred_cost if len(suffixes) == 1 else cost_preds)
    routers: dict[str, list[dict]] = {name: [] for name in preds}
    references: dict[str, list[dict]] = {}
    for k, (seed, te) in enumerate(zip(splits.seeds, evaluated, strict=True)):
        logging.info("evaluate: seed %d, routers and references, both decision rules", seed)
        # The routers and the reference routers of this seed in one [R, N, M] sweep.
        ref_names, ref_scores, ref_costs, extras = jrouting.reference_routers(
            te.quality, te.cost, seed=seed, model_names=models
        )
        entries = jrouting.evaluate_routers(
            np.concatenate([np.stack([p[0][k] for p in preds.values()]), ref_scores]),
            np.concatenate([np.stack([p[1][k] for p in preds.values()]), ref_costs]),
            te.quality,
            te.cost,
            budgets=budgets,
            strong_model=strong,
        )
        for name, entry in zip(preds, entries[: len(preds)], strict=True):
            routers[name].append(entry)
        for name, entry in zip(ref_names, entries[len(preds) :], strict=True):
            references.setdefault(name, []).append({**entry, **extras.get(name, {})})
        references.setdefault("zero_router", []).append(
            jrouting.zero_router_result(te.quality, te.cost)
        )
    reference = {name: jrouting.aggregate_seeds(res) for name, res in references.items()}
    summary = jrouting.dataset_summary(data.quality, data.cost, models, data.tasks)
    summary["source"] = str(data.source)
    summary["seeds"] = splits.seeds
    summary["n_train"] = splits.train[0].num_prompts
    summary["n_test"] = splits.test[0].num_prompts
    summary["evaluated_on"] = part
    summary["n_evaluated"] = evaluated[0].num_prompts
    summary["split"] = config.data.split
    fc = config.features
    if fc.source == "encoder":  # which encoder made the features, and in which mode
        encoder = encoders.config_encoder(fc)
        mode = encoders.encoder_dtype(encoder, fc.get("encoder_dtype", "auto"))
        summary["encoder"] = encoders.encoder_record(encoder, mode)
    strong_name = models[strong] if strong is not None else None
    if dist.is_main():  # the other processes build the same report without writing it
        paths = jreport.write_report(
            output_dir,
            dataset=summary,
            routers=routers,
            reference=reference,
            model_names=models,
            strong_model=strong_name,
            fitted=choices,
        )
        report = json.loads(pathlib.Path(paths["json"]).read_text())
    else:
        paths = {}
        report = json.loads(json.dumps(jreport.build_report(summary, routers, reference, choices)))
    report["paths"] = paths
    report["headline"] = jreport.headline_table(report)
    return report
