"""Task-posterior router (``taskprior``; ``best`` in configs/best.py): fit and table pair.

The training prompts carry a task label (``eval_name``); a test prompt does not. The
router learns the task from the features and routes on what each model does on that
task (docs/method.md §4):

1. the *task prior* (:mod:`jaxroute.models.taskprior_model`): a linear softmax task head
   ``p(t | x)`` and per-task mean quality (shrunk to the overall mean) and cost of every
   model; a prompt gets their posterior expectations ``s(x) = Σ_t p(t|x) μ[t]`` and
   ``ĉ(x) = Σ_t p(t|x) c̄[t]``, on the quality scale the λ rule ``argmax_m s − λ·ĉ``
   needs;
2. optionally blended with the mean of the ``blend_k`` nearest training prompts and a
   per-prompt MLP, ``w · prior + v · MLP + (1 − w − v) · neighbours``
   (:mod:`jaxroute.models.taskprior_blend`), then with the item-response model's
   probabilities (:mod:`jaxroute.models.irt`), ``(1 − u) · s + u · irt``, and a cost
   margin ``s − m · ĉ / max ĉ``;
3. whatever is given as a choice (several weights, ``cost_margin_z > 0``,
   ``calibrate_temperature``) is chosen on cross-fitted predictions of the training
   prompts (:mod:`jaxroute.models.selection`).

The fields and their defaults are :class:`~jaxroute.models.taskprior_config.TaskPriorConfig`.
At test time only the features are read. A dataset with one task gets the overall means
(one fixed ranking); tasks that the features cannot tell apart share their posterior
mass. Nothing depends on the dataset's name, size or model list. Like kNN it is fitted,
not trained by the experiment's epoch loop: ``fit`` and ``predict`` are the router
table's non-trainable pair (deterministic: initialisations come from ``seed``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from jaxroute.models.irt import fit_irt, model_of
from jaxroute.models.selection import MARGIN_GRID, TEMPERATURE_GRID, select_blend_and_margin
from jaxroute.models.taskprior_blend import candidate_pairs, with_margin
from jaxroute.models.taskprior_config import TaskPriorConfig
from jaxroute.models.taskprior_model import (
    TaskPriorState,
    fit_prior,
    fit_prompt_mlp,
    mlp_predict,
    predict_task_prior,
    task_posterior,
    task_statistics,
)


def _choices_to_make(cfg: TaskPriorConfig, weights, mlp_ws, irt_ws) -> bool:
    several = len(weights) > 1 or len(mlp_ws) > 1 or len(irt_ws) > 1
    return several or cfg.cost_margin_z > 0 or cfg.calibrate_temperature


def _irt_kwargs(cfg: TaskPriorConfig) -> dict:
    """:func:`~jaxroute.models.irt.fit_irt`'s settings of the blended item-response model
    (the rest at fit_irt's defaults: BCE, early stopping on a fifth, every 25 steps)."""
    return dict(
        hidden=int(cfg.irt_hidden),
        skills=int(cfg.irt_skills),
        learning_rate=float(cfg.irt_lr),
        steps=int(cfg.irt_max_steps),
    )


def fit_task_prior(
    features: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    tasks: np.ndarray,
    cfg: TaskPriorConfig | None = None,
    *,
    seed: int = 0,
    **fields,
) -> TaskPriorState:
    """Fits the router on training prompts: the task prior, then the blend and margin.

    Args:
      features: ``[N, D]`` training features (rows are L2-normalised inside).
      quality: ``[N, M]`` training quality.
      cost: ``[N, M]`` training cost.
      tasks: ``[N]`` task labels of the training prompts (any hashable strings).
      cfg: the settings (default: :class:`TaskPriorConfig`'s defaults).
      seed: the initialisations (head, MLP) and the cross-fitting's folds.
      **fields: :class:`TaskPriorConfig` fields replacing ``cfg``'s.

    The blend: the router's score and cost are ``w · prior + v · MLP + (1 − w − v) ·
    neighbours`` (the MLP predicts no cost: the cost is the prior's and the neighbours'
    in the proportions ``w : (1 − w − v)``), with ``w`` from ``blend_weights`` and ``v``
    from ``mlp_weights`` (pairs with ``w + v ≤ 1``; without neighbours, ``w + v = 1``);
    several candidates are chosen on cross-fitted predictions (``cv_folds`` folds): the
    pair whose λ rule reaches the best single model's quality at the lowest cost. The
    margin: the routed score is ``s − cost_margin · ĉ / max_m ĉ``; with
    ``cost_margin_z > 0`` the margin is chosen on the cross-fitted predictions instead
    (the largest of ``[0, 0.2]`` whose top-budget routing still beats the best single
    model's quality by ``cost_margin_z`` standard errors). ``calibrate_temperature``
    replaces ``temperature`` by the one of :data:`TEMPERATURE_GRID` that minimises the
    cross-fitted task cross-entropy (a linear head trained briefly is under-confident,
    and a blurred posterior mixes tasks' statistics). ``irt_weights``: the blended score
    becomes ``(1 − u) · s + u · σ(z)`` with the item-response model of
    :mod:`jaxroute.models.irt` (``irt_hidden``, ``irt_skills``, ``irt_lr``,
    ``irt_max_steps``); with several candidates, a ``u`` above the least is taken only
    if it beats the least on the cross-fitted predictions beyond their bootstrap noise
    (:func:`~jaxroute.models.selection.choose_irt_weight`), so where the item-response
    model adds nothing the router is the one fitted without it.

    Returns:
      A :class:`TaskPriorState`.
    """
    cfg = dataclasses.replace(cfg or TaskPriorConfig(), **fields)
    features = np.asarray(features, np.float32)
    state = fit_prior(features, quality, cost, tasks, cfg, seed)
    weights = tuple(float(w) for w in cfg.blend_weights)
    if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
        raise ValueError(f"blend_weights {cfg.blend_weights}: need one or more weights in [0, 1]")
    if cfg.cost_margin < 0 or cfg.cost_margin_z < 0:
        raise ValueError(
            f"cost_margin {cfg.cost_margin} and cost_margin_z {cfg.cost_margin_z}: need >= 0"
        )
    mlp_ws = tuple(float(v) for v in cfg.mlp_weights) if cfg.mlp_hidden > 0 else (0.0,)
    if not mlp_ws or any(not 0.0 <= v < 1.0 for v in mlp_ws):
        raise ValueError(f"mlp_weights {cfg.mlp_weights}: need one or more weights in [0, 1)")
    irt_ws = tuple(float(u) for u in cfg.irt_weights)
    if not irt_ws or any(not 0.0 <= u <= 1.0 for u in irt_ws):
        raise ValueError(f"irt_weights {cfg.irt_weights}: need one or more weights in [0, 1]")
    irt_kwargs = _irt_kwargs(cfg)
    mlp_kwargs = dict(
        hidden=int(cfg.mlp_hidden),
        steps=int(cfg.mlp_steps),
        learning_rate=float(cfg.mlp_learning_rate),
        weight_decay=float(cfg.mlp_weight_decay),
        seed=seed,
    )
    k = int(min(cfg.blend_k, features.shape[0])) if min(weights) < 1.0 else 0
    if not candidate_pairs(weights, mlp_ws, k > 0):
        raise ValueError(
            f"blend_weights {weights} and mlp_weights {mlp_ws}: no pair with w + v <= 1 "
            "(the neighbours take 1 - w - v)"
        )
    margin, selection = float(cfg.cost_margin), None
    chosen, chosen_v, chosen_u = weights[0], mlp_ws[0], irt_ws[0]
    if _choices_to_make(cfg, weights, mlp_ws, irt_ws):
        (chosen, chosen_v, chosen_u), margin, selection = select_blend_and_margin(
            features,
            quality,
            cost,
            tasks,
            cfg=cfg,
            blend_k=k,
            weights=weights,
            margin=float(cfg.cost_margin) if cfg.cost_margin_z == 0 else None,
            z=float(cfg.cost_margin_z),
            calibrate=bool(cfg.calibrate_temperature),
            folds=int(cfg.cv_folds),
            seed=seed,
            mlp_weights=mlp_ws,
            mlp_kwargs=mlp_kwargs,
            irt_weights=irt_ws,
            irt_kwargs=irt_kwargs,
        )
    if k == 0:  # without neighbours the prior takes what the MLP leaves
        chosen = 1.0 - chosen_v
    mlp = fit_prompt_mlp(features, quality, **mlp_kwargs) if chosen_v > 0 else None
    irt = None
    if chosen_u > 0:
        irt = model_of(fit_irt(features, quality, cost, tasks, **irt_kwargs, seed=seed))
    if chosen + chosen_v < 1.0 and k > 0:
        state = dataclasses.replace(
            state,
            train_features=features,
            train_quality=np.asarray(quality, np.float32),
            train_cost=np.asarray(cost, np.float32),
        )
    if selection is not None and cfg.calibrate_temperature:
        state = dataclasses.replace(state, temperature=selection["temperature"])
    return dataclasses.replace(
        state,
        blend_weight=float(chosen),
        blend_k=k if chosen + chosen_v < 1.0 else 0,
        cost_margin=margin,
        selection=selection,
        mlp=mlp,
        mlp_weight=float(chosen_v),
        irt=irt,
        irt_weight=float(chosen_u),
    )


# ------------------------------------------------------------------ router table pair
def taskprior_fit(train, rc) -> TaskPriorState:
    """The router table's ``fit``: a seed's training part (RoutingData) and config entry."""
    cfg = TaskPriorConfig.from_config(rc)
    state = fit_task_prior(train.features, train.quality, train.cost, train.tasks, cfg)
    if state.selection is not None:
        sel = state.selection
        logging.info(
            "taskprior: cross-fitted on %d training prompts (%d folds): prior weight %.2f, "
            "MLP weight %.2f (λ-rule CR by candidate %s), cost margin %.3f, posterior "
            "temperature %.2f",
            train.num_prompts,
            sel["folds"],
            sel["weight"],
            sel["mlp_weight"],
            {w: round(v, 3) for w, v in sel["lambda_cost_ratio"].items()},
            sel["margin"],
            sel["temperature"],
        )
        if "irt_weight" in sel:
            logging.info(
                "taskprior: item-response weight %.2f (λ-rule CR by weight %s, share of %d "
                "resamples won against the least %s)",
                sel["irt_weight"],
                {u: round(v, 3) for u, v in sel["irt_lambda_cost_ratio"].items()},
                sel["irt_resamples"],
                sel["irt_win_share"],
            )
    return state


def taskprior_choices(state: TaskPriorState) -> dict | None:
    """The router table's ``choices``: what ``fit`` chose on cross-fitted predictions.

    ``temperature``, ``blend_weight``, ``mlp_weight``, ``cost_margin`` and ``blend_k``
    are the fitted router's own values; ``folds`` and the cross-fitted scores that chose
    them are :func:`select_blend_and_margin`'s (``task_nll``, ``lambda_cost_ratio``,
    ``quality_at_lambda_0``, ``margin_z``, ``margin_lower_bound``). With item-response
    weights, also ``irt_weight``, ``irt_steps`` (early stopping's step count of the
    fitted model; 0 without one) and the scores that chose the weight
    (``irt_lambda_cost_ratio``, ``irt_win_share``, ``irt_resamples``). None when nothing
    was chosen (one weight, a fixed margin and temperature).
    """
    sel = state.selection
    if sel is None:
        return None
    scores = ("task_nll", "lambda_cost_ratio", "quality_at_lambda_0", "margin_z")
    irt = {}
    if "irt_weight" in sel:
        irt = {
            "irt_weight": float(state.irt_weight),
            "irt_steps": 0 if state.irt is None else int(state.irt["steps"]),
            **{k: sel[k] for k in ("irt_lambda_cost_ratio", "irt_win_share", "irt_resamples")},
        }
    return {
        "temperature": float(state.temperature),
        "blend_weight": float(state.blend_weight),
        "mlp_weight": float(state.mlp_weight),
        "cost_margin": float(state.cost_margin),
        "blend_k": int(state.blend_k),
        "folds": int(sel["folds"]),
        **{k: sel[k] for k in (*scores, "margin_lower_bound")},
        **irt,
    }


def taskprior_predict(state: TaskPriorState, x, rc) -> tuple[np.ndarray, np.ndarray]:
    """The router table's ``predict``: ``(scores, own predicted costs)``."""
    del rc
    return predict_task_prior(state, x)


__all__ = [
    "MARGIN_GRID",
    "TEMPERATURE_GRID",
    "TaskPriorConfig",
    "TaskPriorState",
    "fit_task_prior",
    "mlp_predict",
    "predict_task_prior",
    "task_posterior",
    "task_statistics",
    "taskprior_choices",
    "taskprior_fit",
    "taskprior_predict",
    "with_margin",
]
