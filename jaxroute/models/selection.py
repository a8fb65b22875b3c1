"""Cross-fitted choices of the taskprior router: temperature, blend weights, cost margin.

Choosing is evaluation, not a model: each of ``folds`` folds of the *training* prompts
is predicted by the parts (task prior, neighbours, MLP) fitted on the other folds, and
the routing sweeps of :mod:`jaxroute.routing` score the candidates on these out-of-fold
predictions. The test split is never read. :func:`select_blend_and_margin` is what
:func:`jaxroute.models.taskprior.fit_task_prior` calls when it has something to choose;
it fits only the parts (:mod:`jaxroute.models.taskprior_model`), never the router.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxroute import routing as jr
from jaxroute.models.knn import knn_predict
from jaxroute.models.taskprior_blend import blend3, candidate_key, candidate_pairs, with_margin
from jaxroute.models.taskprior_model import (
    fit_prior,
    fit_prompt_mlp,
    mlp_predict,
    predict_task_prior,
    task_posterior,
)
from jaxroute.routing import metrics as M
from jaxroute.routing.reference import best_single_model

#: Posterior temperatures tried by ``calibrate_temperature``.
TEMPERATURE_GRID = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)

#: Cost margins tried by :func:`select_blend_and_margin` (quality per relative cost).
MARGIN_GRID = tuple(round(0.005 * i, 3) for i in range(41))


def _routed_quality(quality: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-prompt quality of the top-scored model (the rule at the largest budget)."""
    return quality[np.arange(len(quality)), np.argmax(scores, axis=1)].astype(np.float64)


def _lambda_cost_ratio(scores, pred_costs, quality, cost, best: int) -> float:
    """CR of the λ rule at the best single model's quality (``inf``: not reached)."""
    res = jr.lambda_sweep(
        scores, pred_costs, quality, cost, jr.lambda_grid(scores, pred_costs), with_shares=False
    )
    q_best = float(np.asarray(quality[:, best], np.float64).mean())
    c_star = M.cost_at_quality(res.cost, res.quality, q_best)
    return M.cost_ratio(c_star, float(np.asarray(cost[:, best], np.float64).mean()))


def _temperature_nll(subs, features, tasks) -> dict[float, float]:
    """Mean task cross-entropy of the cross-fitted posteriors at each grid temperature.

    ``softmax(z / T) = softmax(log softmax(z) / T)``, so the fold models' posteriors at
    ``T = 1`` give every temperature. Prompts of a task a fold never saw are skipped.
    """
    nll = {t: 0.0 for t in TEMPERATURE_GRID}
    count = 0
    for held, _, sub in subs:
        logp = np.log(
            np.maximum(
                task_posterior(dataclasses.replace(sub, temperature=1.0), features[held]), 1e-30
            )
        )
        index = {name: i for i, name in enumerate(sub.task_names)}
        known = np.array([t in index for t in tasks[held]])
        if not known.any():
            continue
        y = np.array([index[t] for t in tasks[held][known]])
        logp = logp[known].astype(np.float64)
        count += y.size
        for t in TEMPERATURE_GRID:
            z = logp / t
            z = z - z.max(axis=1, keepdims=True)
            z = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            nll[t] -= float(z[np.arange(y.size), y].sum())
    return {t: v / max(count, 1) for t, v in nll.items()}


def select_blend_and_margin(
    features,
    quality,
    cost,
    tasks,
    *,
    cfg,
    blend_k,
    weights,
    margin,
    z,
    folds,
    seed,
    calibrate=False,
    mlp_weights=(0.0,),
    mlp_kwargs=None,
) -> tuple[tuple[float, float], float, dict]:
    """Chooses the temperature, blend weight and cost margin on cross-fitted predictions.

    Each of ``folds`` folds of the training prompts is predicted by the task prior
    (:func:`fit_prior` with ``cfg``'s head and statistics settings) and the ``blend_k``
    nearest neighbours fitted on the other folds. With ``calibrate``, the posterior
    temperature is the grid value of least task cross-entropy on these predictions (and
    the predictions below use it). The weight is the candidate of ``weights`` whose λ
    rule reaches the best single model's mean quality at the lowest cost on these
    predictions (ties, such as none reaching it: the highest quality at λ = 0, then the
    first). With ``margin=None`` the margin is the largest of :data:`MARGIN_GRID`
    (stopping at the first failure) whose routing at the largest budget beats the best
    single model by ``z`` standard errors of the per-prompt quality difference. Only
    training prompts are read.

    With ``mlp_weights`` other than ``(0,)`` a per-prompt MLP (``mlp_kwargs``, see
    :func:`fit_prompt_mlp`) is fitted per fold too, and the candidates are the pairs
    ``(w, v)`` of a prior weight and an MLP weight.

    Returns:
      ``((weight, mlp weight), margin, selection)``; ``selection`` records what was
      tried: ``folds``, ``temperature``, ``task_nll`` (grid temperature -> cross-fitted
      task NLL; None without ``calibrate``), ``lambda_cost_ratio`` and
      ``quality_at_lambda_0`` (candidate ``"w"``, or ``"w+mlpV"`` with an MLP -> the λ
      rule's CR, ``inf`` if not reached, and the top-budget quality), ``weight``,
      ``mlp_weight``, ``margin``, ``margin_z`` and ``margin_lower_bound`` (margin tried ->
      mean − z·SE of the quality gain over the best single model; the last one tried is
      the first below 0 unless the grid ran out; None when the margin was given).
    """
    quality = np.asarray(quality, np.float32)
    cost = np.asarray(cost, np.float32)
    tasks = np.asarray([str(t) for t in tasks])
    n = features.shape[0]
    folds = int(min(max(folds, 2), n))
    perm = np.random.default_rng(seed).permutation(n)
    prior_s, prior_c = np.zeros_like(quality), np.zeros_like(cost)
    near_s, near_c = np.zeros_like(quality), np.zeros_like(cost)
    with_mlp = any(v > 0 for v in mlp_weights)
    mlp_s = np.zeros_like(quality)
    subs = []
    for f in range(folds):
        held = perm[f::folds]
        rest = np.setdiff1d(perm, held)
        sub = fit_prior(features[rest], quality[rest], cost[rest], tasks[rest], cfg, seed)
        subs.append((held, rest, sub))
    temperature, nll = float(cfg.temperature), None
    if calibrate:
        nll = _temperature_nll(subs, features, tasks)
        temperature = float(min(TEMPERATURE_GRID, key=lambda t: nll[t]))
    for held, rest, sub in subs:
        sub = dataclasses.replace(sub, temperature=temperature)
        prior_s[held], prior_c[held] = predict_task_prior(sub, features[held])
        if blend_k > 0:
            k = min(blend_k, rest.size)
            q, c = knn_predict(features[rest], quality[rest], cost[rest], features[held], k=k)
            near_s[held], near_c[held] = np.asarray(q), np.asarray(c)
        if with_mlp:
            fitted = fit_prompt_mlp(features[rest], quality[rest], **mlp_kwargs)
            mlp_s[held] = mlp_predict(fitted, features[held])
    best = best_single_model(quality, cost)
    pairs = candidate_pairs(weights, mlp_weights, blend_k > 0)
    tried, top = {}, {}
    for w, v in pairs:
        s, c = blend3(w, v, prior_s, near_s, mlp_s, prior_c, near_c)
        tried[w, v] = _lambda_cost_ratio(s, c, quality, cost, best)
        top[w, v] = float(_routed_quality(quality, s).mean())
    # Lowest CR; among equal ones (e.g. none reaches the target) the best quality at λ = 0.
    weight, mlp_weight = min(pairs, key=lambda p: (tried[p], -top[p]))
    s, c = blend3(weight, mlp_weight, prior_s, near_s, mlp_s, prior_c, near_c)
    bounds = None  # margin -> mean - z·SE of the quality gain over the best single model
    if margin is None:
        margin, bounds = 0.0, {}
        for m in MARGIN_GRID[1:]:
            diff = _routed_quality(quality, with_margin(s, c, m)) - quality[:, best]
            bounds[m] = float(diff.mean() - z * diff.std() / np.sqrt(n))
            if bounds[m] < 0:
                break
            margin = m
    selection = {
        "folds": folds,
        "temperature": temperature,
        "task_nll": None if nll is None else {str(t): float(v) for t, v in nll.items()},
        "lambda_cost_ratio": {candidate_key(*p, with_mlp): float(v) for p, v in tried.items()},
        "quality_at_lambda_0": {candidate_key(*p, with_mlp): v for p, v in top.items()},
        "weight": float(weight),
        "mlp_weight": float(mlp_weight),
        "margin": float(margin),
        "margin_z": float(z) if bounds is not None else None,
        "margin_lower_bound": None if bounds is None else {str(m): v for m, v in bounds.items()},
    }
    return (float(weight), float(mlp_weight)), float(margin), selection
