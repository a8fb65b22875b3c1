"""Cross-fitted choices of the taskprior router: temperature, blend weights, cost margin.

Choosing is evaluation, not a model: each of ``folds`` folds of the *training* prompts
is predicted by the parts (task prior, neighbours, MLP, item-response model) fitted on
the other folds, and
the routing sweeps of :mod:`jaxroute.routing` score the candidates on these out-of-fold
predictions. The test split is never read. :func:`select_blend_and_margin` is what
:func:`jaxroute.models.taskprior.fit_task_prior` calls when it has something to choose;
it fits only the parts (:mod:`jaxroute.models.taskprior_model`), never the router.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxroute import routing as jr
from jaxroute.models.irt import fit_irt, model_of, model_probabilities
from jaxroute.models.knn import knn_predict
from jaxroute.models.taskprior_blend import (
    blend3,
    candidate_key,
    candidate_pairs,
    with_irt,
    with_margin,
)
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

#: Paired bootstrap resamples of the cross-fitted prompts that weigh an item-response
#: weight against the least one, and the share of them it must win (lower λ-rule CR).
IRT_RESAMPLES = 200
IRT_WIN_SHARE = 0.95


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


def choose_irt_weight(scores, pred_costs, irt, quality, cost, best, weights, seed):
    """The item-response weight ``u``: the least of ``weights`` unless a larger one wins.

    Each candidate scores ``(1 − u) · scores + u · irt`` (cross-fitted predictions of the
    training prompts) and gets the λ rule's CR at the best single model's quality. A
    larger ``u`` than the least competes only if its CR is lower than the least one's on
    at least :data:`IRT_WIN_SHARE` of :data:`IRT_RESAMPLES` paired bootstrap resamples
    of the prompts (``seed``'s); of those, the lowest CR on all prompts wins (ties: the
    smaller ``u``). Candidates within the noise thus resolve to the simpler one.

    Returns:
      ``(u, record)``; ``record``: ``irt_lambda_cost_ratio`` (u -> CR, ``inf`` if not
      reached), ``irt_win_share`` (u above the least -> share of resamples won; empty
      with one candidate) and ``irt_resamples``.
    """
    weights = sorted({float(u) for u in weights})
    mixed = {u: with_irt(scores, irt, u) for u in weights}
    tried = {u: _lambda_cost_ratio(mixed[u], pred_costs, quality, cost, best) for u in weights}
    least, shares = weights[0], {}
    if len(weights) > 1:
        rows = np.random.default_rng(seed).integers(0, len(quality), (IRT_RESAMPLES, len(quality)))
        wins = dict.fromkeys(weights[1:], 0)
        for r in rows:
            base = _lambda_cost_ratio(mixed[least][r], pred_costs[r], quality[r], cost[r], best)
            for u in wins:
                cr = _lambda_cost_ratio(mixed[u][r], pred_costs[r], quality[r], cost[r], best)
                wins[u] += int(cr < base)
        shares = {u: wins[u] / IRT_RESAMPLES for u in wins}
    passed = [least] + [u for u in weights[1:] if shares[u] >= IRT_WIN_SHARE]
    chosen = min(passed, key=lambda u: (tried[u], u))
    record = {
        "irt_lambda_cost_ratio": {str(u): float(v) for u, v in tried.items()},
        "irt_win_share": {str(u): float(v) for u, v in shares.items()},
        "irt_resamples": IRT_RESAMPLES if shares else 0,
    }
    return float(chosen), record


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
    irt_weights=(0.0,),
    irt_kwargs=None,
) -> tuple[tuple[float, float, float], float, dict]:
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

    With ``irt_weights`` other than ``(0,)`` the item-response model of
    :mod:`jaxroute.models.irt` (:func:`fit_irt` with ``irt_kwargs``) is fitted per fold
    too, and once ``(w, v)`` is chosen its weight ``u`` is (:func:`choose_irt_weight`);
    the margin is then chosen on the scores with it.

    Returns:
      ``((weight, mlp weight, irt weight), margin, selection)``; ``selection`` records
      what was
      tried: ``folds``, ``temperature``, ``task_nll`` (grid temperature -> cross-fitted
      task NLL; None without ``calibrate``), ``lambda_cost_ratio`` and
      ``quality_at_lambda_0`` (candidate ``"w"``, or ``"w+mlpV"`` with an MLP -> the λ
      rule's CR, ``inf`` if not reached, and the top-budget quality), ``weight``,
      ``mlp_weight``, ``margin``, ``margin_z`` and ``margin_lower_bound`` (margin tried ->
      mean − z·SE of the quality gain over the best single model; the last one tried is
      the first below 0 unless the grid ran out; None when the margin was given); with
      item-response weights, ``irt_weight`` and :func:`choose_irt_weight`'s record.
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
    irt_on = any(u > 0 for u in irt_weights)
    irt_s = np.zeros_like(quality)
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
        if irt_on:
            part = (features[rest], quality[rest], cost[rest], tasks[rest])
            model = model_of(fit_irt(*part, **irt_kwargs, seed=seed))
            irt_s[held] = model_probabilities(model, features[held])
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
    irt_weight, irt_record = 0.0, {}
    if irt_on:
        irt_weight, irt_record = choose_irt_weight(
            s, c, irt_s, quality, cost, best, irt_weights, seed
        )
        irt_record["irt_weight"] = irt_weight
        s = with_irt(s, irt_s, irt_weight)
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
        **irt_record,
    }
    return (float(weight), float(mlp_weight), irt_weight), float(margin), selection
