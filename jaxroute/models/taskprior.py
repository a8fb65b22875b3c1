"""Task-posterior router: per-task model statistics, weighted by a learned task head.

The training prompts carry a task label (``eval_name``); a test prompt does not. The
router learns the task from the features and routes on what each model does on that task:

1. a linear softmax task head ``p(t | x)`` (:class:`TaskHead`, a Flax module) is fitted
   to the training prompts' task labels (full-batch Adam, one ``lax.scan`` under ``jit``);
2. per task ``t`` and model ``m``: the mean quality ``μ[t, m]``, shrunk towards the
   model's overall mean with ``prior_strength`` pseudo-prompts (empirical Bayes, so a
   rare task does not get a noisy estimate), and the mean cost ``c̄[t, m]``;
3. a test prompt gets ``s(x) = Σ_t p(t|x) μ[t]`` and ``ĉ(x) = Σ_t p(t|x) c̄[t]``: the
   posterior expectation of quality and cost. Scores are on the quality scale, as the
   λ rule ``argmax_m s − λ·ĉ`` needs.

At test time only the features are read. A dataset with one task gets the overall
means (one fixed ranking); tasks that the features cannot tell apart share their
posterior mass. Nothing depends on the dataset's name, size or model list.

Optionally (``mlp_hidden > 0``) a per-prompt MLP (:class:`PromptMLP`, sigmoid
outputs trained with BCE on the quality) joins the blend with a weight chosen, like the
prior's, on cross-fitted predictions of the training prompts.

Like kNN it is fitted, not trained by the experiment's epoch loop: ``fit`` and
``predict`` are the router table's non-trainable pair (deterministic: the head's
initialisation comes from ``seed``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxroute.models.regressors import dense

_NORM_EPS = 1e-12


class TaskHead(nn.Module):
    """Linear task classifier: features ``[B, D]`` to task logits ``[B, T]``."""

    num_tasks: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return dense(self.num_tasks, name="out")(x)


class PromptMLP(nn.Module):
    """Per-prompt quality logits: features ``[B, D]`` -> ``Dense(H) → GELU → Dense(M)``."""

    num_models: int
    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.gelu(dense(self.hidden, name="hidden")(x))
        return dense(self.num_models, name="out")(h)


def _minimise(objective, params, tx, steps: int):
    """``steps`` full-batch steps of ``tx`` on ``objective`` in one ``lax.scan``."""

    def step(carry, _):
        p, opt = carry
        updates, opt = tx.update(jax.grad(objective)(p), opt, p)
        return (optax.apply_updates(p, updates), opt), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params


@functools.partial(jax.jit, static_argnames=("hidden", "steps"))
def _fit_mlp(key, x, quality, *, hidden, steps, learning_rate, weight_decay):
    """Full-batch AdamW on the mean BCE of sigmoid outputs against quality in [0, 1]."""
    module = PromptMLP(quality.shape[1], hidden)
    x = _normalise(x)
    params = module.init(key, x[:1])
    opt = optax.adamw(learning_rate, weight_decay=weight_decay)
    target = jnp.clip(quality, 0.0, 1.0)

    def loss(p):
        return optax.sigmoid_binary_cross_entropy(module.apply(p, x), target).mean()

    return _minimise(loss, params, opt, steps)


@jax.jit
def _mlp_quality(params, x):
    hidden, num_models = params["params"]["out"]["kernel"].shape  # static at trace time
    return jax.nn.sigmoid(PromptMLP(num_models, hidden).apply(params, _normalise(x)))


def _mlp_predict(params, x: np.ndarray) -> np.ndarray:
    """Predicted quality ``[N, M]`` of a fitted :class:`PromptMLP` (its variables)."""
    return np.asarray(_mlp_quality(params, jnp.asarray(np.asarray(x, np.float32))))


def fit_prompt_mlp(features, quality, *, hidden, steps, learning_rate, weight_decay, seed):
    """Fits a :class:`PromptMLP` to ``quality`` ``[N, M]``; returns its variables."""
    return _fit_mlp(
        jax.random.key(seed + 7919),
        jnp.asarray(np.asarray(features, np.float32)),
        jnp.asarray(np.asarray(quality, np.float32)),
        hidden=int(hidden),
        steps=int(steps),
        learning_rate=float(learning_rate),
        weight_decay=float(weight_decay),
    )


@dataclasses.dataclass(frozen=True)
class TaskPriorState:
    """A fitted task-posterior router (plain arrays; ``params`` is the head's variables)."""

    params: Any
    num_tasks: int
    task_names: tuple[str, ...]
    quality: np.ndarray  # [T, M] shrunk per-task mean quality
    cost: np.ndarray  # [T, M] per-task mean cost
    temperature: float
    # Optional empirical-Bayes blend with the k nearest training prompts (k = 0: off).
    knn_k: int = 0
    knn_strength: float = 0.0
    train_features: np.ndarray | None = None
    train_quality: np.ndarray | None = None
    train_cost: np.ndarray | None = None
    # Optional per-prompt residual on the prior's logit (None: off).
    residual: Any = None
    # Cross-fitted blend with the k nearest training prompts and cost margin (see
    # :func:`select_blend_and_margin`): weight of the prior, neighbours, margin.
    blend_weight: float = 1.0
    blend_k: int = 0
    cost_margin: float = 0.0
    selection: dict | None = None
    # Optional per-prompt MLP in the blend (see :func:`fit_prompt_mlp`): its variables
    # and weight.
    mlp: Any = None
    mlp_weight: float = 0.0


def _normalise(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _NORM_EPS)


@functools.partial(jax.jit, static_argnames=("num_tasks", "steps"))
def _fit_head(key, x, task_ids, *, num_tasks, steps, learning_rate, weight_decay):
    """Full-batch AdamW on the task cross-entropy, one ``lax.scan``; returns variables."""
    head = TaskHead(num_tasks)
    x = _normalise(x)
    params = head.init(key, x[:1])
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    targets = jax.nn.one_hot(task_ids, num_tasks)

    def loss(p):
        logp = jax.nn.log_softmax(head.apply(p, x))
        return -jnp.mean(jnp.sum(targets * logp, axis=-1))

    return _minimise(loss, params, tx, steps)


class Residual(nn.Module):
    """Per-prompt correction: a linear map of the scaled features to ``[B, M]`` logits."""

    num_models: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(self.num_models, kernel_init=nn.initializers.zeros_init(), name="out")(x)


#: Losses of ``jaxroute.losses.LOSSES`` that read logits; every other loss reads the
#: success probability ``sigmoid(logit)`` (the quality scale of the decision rules).
LOGIT_LOSSES = ("bce", "bce_wtp")


def _scaled(x: jax.Array) -> jax.Array:
    """L2-normalised rows times ``sqrt(D)``: entries of unit scale for any feature width."""
    return _normalise(x) * jnp.sqrt(jnp.float32(x.shape[-1]))


def _logit(p: jax.Array) -> jax.Array:
    p = jnp.clip(p, 1e-3, 1.0 - 1e-3)
    return jnp.log(p) - jnp.log1p(-p)


@functools.partial(jax.jit, static_argnames=("loss", "steps"))
def _fit_residual(x, base, quality, cost, *, loss, steps, learning_rate, l2):
    """Full-batch Adam on ``loss(base + residual(x))`` + ``l2·|W|²``; returns variables."""
    from jaxroute.losses import LOSSES

    module = Residual(quality.shape[-1])
    x = _scaled(x)
    params = module.init(jax.random.key(0), x[:1])
    tx = optax.adam(learning_rate)
    fn = LOSSES[loss]

    def objective(p):
        z = base + module.apply(p, x)
        scores = z if loss in LOGIT_LOSSES else jax.nn.sigmoid(z)
        kernel = p["params"]["out"]["kernel"]
        return fn(scores, quality, costs=cost) + l2 * jnp.sum(kernel**2)

    return _minimise(objective, params, tx, steps)


def task_statistics(
    quality: np.ndarray, cost: np.ndarray, task_ids: np.ndarray, num_tasks: int, strength: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-task mean quality (shrunk to the overall mean) and mean cost, ``[T, M]`` each.

    ``μ[t] = (Σ_{i in t} y_i + a·ȳ) / (n_t + a)`` with ``a = strength``.

    >>> q = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> mu, cb = task_statistics(q, q, np.array([0, 0, 1]), 2, 1.0)
    >>> mu.round(3).tolist()
    [[0.889, 0.111], [0.333, 0.667]]
    """
    quality = np.asarray(quality, np.float64)
    cost = np.asarray(cost, np.float64)
    m = quality.shape[1]
    counts = np.bincount(task_ids, minlength=num_tasks).astype(np.float64)
    sum_q = np.zeros((num_tasks, m))
    sum_c = np.zeros((num_tasks, m))
    np.add.at(sum_q, task_ids, quality)
    np.add.at(sum_c, task_ids, cost)
    overall_q, overall_c = quality.mean(axis=0), cost.mean(axis=0)
    mu = (sum_q + strength * overall_q) / (counts[:, None] + strength)
    cbar = np.where(counts[:, None] > 0, sum_c / np.maximum(counts[:, None], 1), overall_c)
    return mu.astype(np.float32), cbar.astype(np.float32)


def fit_task_prior(
    features: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    tasks: np.ndarray,
    *,
    steps: int = 300,
    learning_rate: float = 3e-3,
    weight_decay: float = 1e-4,
    prior_strength: float = 1.0,
    temperature: float = 1.0,
    knn_k: int = 0,
    knn_strength: float = 1.0,
    residual_loss: str = "",
    residual_steps: int = 400,
    residual_learning_rate: float = 1e-2,
    residual_l2: float = 0.1,
    blend_k: int = 0,
    blend_weights: tuple[float, ...] = (1.0,),
    cost_margin: float = 0.0,
    cost_margin_z: float = 0.0,
    calibrate_temperature: bool = False,
    cv_folds: int = 5,
    mlp_hidden: int = 0,
    mlp_steps: int = 400,
    mlp_learning_rate: float = 1e-3,
    mlp_weight_decay: float = 1e-2,
    mlp_weights: tuple[float, ...] = (0.0,),
    seed: int = 0,
) -> TaskPriorState:
    """Fits the task head and the per-task statistics on training prompts.

    Args:
      features: ``[N, D]`` training features (rows are L2-normalised inside).
      quality: ``[N, M]`` training quality.
      cost: ``[N, M]`` training cost.
      tasks: ``[N]`` task labels of the training prompts (any hashable strings).
      steps, learning_rate, weight_decay: the head's full-batch AdamW schedule.
      prior_strength: pseudo-prompts of the overall mean in each task's mean quality.
      temperature: the posterior is ``softmax(logits / temperature)``.
      knn_k: neighbours of the empirical-Bayes blend (0: the task prior alone).
      knn_strength: weight ``a`` of the prior in the blend, in neighbours: the score is
        ``(k · kNN mean + a·k · prior) / (k + a·k)``.
      residual_loss: a key of ``jaxroute.losses.LOSSES`` (e.g. the decision-aware
        ``"wtp_regret"``): fits a linear per-prompt correction ``r(x)`` of the prior's
        logit, ``s = sigmoid(logit(prior(x)) + r(x))``, on the training prompts with that
        loss (full-batch Adam, ``residual_steps`` at ``residual_learning_rate``, plus
        ``residual_l2 · |W|²``); ``""``: no residual.
      blend_k: neighbours of the final blend (0: none). The router's score and cost are
        ``w · (task prior) + (1 − w) · (mean of the blend_k nearest training prompts)``.
      blend_weights: the candidate ``w``; with more than one, ``w`` is chosen on
        cross-fitted predictions of the training prompts (``cv_folds`` folds): the one
        whose λ rule reaches the best single model's quality at the lowest cost.
      cost_margin: quality a model must gain per unit of relative cost to be preferred:
        the routed score is ``s − cost_margin · ĉ / max_m ĉ`` (a cost tie-break; 0: off).
      cost_margin_z: when > 0, ``cost_margin`` is chosen on the cross-fitted predictions
        instead: the largest margin on a grid of ``[0, 0.2]`` whose top-budget routing
        still beats the best single model's quality by ``cost_margin_z`` standard errors.
      calibrate_temperature: replace ``temperature`` by the one of
        :data:`TEMPERATURE_GRID` that minimises the task cross-entropy of the
        cross-fitted posteriors (temperature scaling; a linear head trained briefly is
        under-confident, and a blurred posterior mixes tasks' statistics).
      cv_folds: folds of the cross-fitting (used only when something is chosen).
      mlp_hidden: width of a per-prompt :class:`PromptMLP` in the blend (0: none). The
        score becomes ``w · prior + v · mlp + (1 − w − v) · neighbours`` (the cost:
        the prior's and the neighbours' in the same proportions), ``v`` from
        ``mlp_weights``, chosen jointly with ``w`` on the cross-fitted predictions
        (pairs with ``w + v ≤ 1``; without neighbours, ``w + v = 1``).
      mlp_steps, mlp_learning_rate, mlp_weight_decay: the MLP's full-batch AdamW.
      mlp_weights: candidate MLP weights ``v`` in ``[0, 1)``.
      seed: the head's initialisation.

    Returns:
      A :class:`TaskPriorState`.
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[0] != len(tasks):
        raise ValueError(
            f"fit_task_prior: features {features.shape} do not match {len(tasks)} task labels"
        )
    names, task_ids = np.unique(np.asarray([str(t) for t in tasks]), return_inverse=True)
    num_tasks = len(names)
    params = _fit_head(
        jax.random.key(seed),
        jnp.asarray(features),
        jnp.asarray(task_ids, jnp.int32),
        num_tasks=num_tasks,
        steps=int(steps),
        learning_rate=float(learning_rate),
        weight_decay=float(weight_decay),
    )
    mu, cbar = task_statistics(quality, cost, task_ids, num_tasks, float(prior_strength))
    state = TaskPriorState(
        params=params,
        num_tasks=num_tasks,
        task_names=tuple(str(n) for n in names),
        quality=mu,
        cost=cbar,
        temperature=float(temperature),
        knn_k=int(min(knn_k, features.shape[0])),
        knn_strength=float(knn_strength),
        train_features=features if knn_k > 0 else None,
        train_quality=np.asarray(quality, np.float32) if knn_k > 0 else None,
        train_cost=np.asarray(cost, np.float32) if knn_k > 0 else None,
    )
    if residual_loss:
        from jaxroute.losses import LOSSES

        if residual_loss not in LOSSES:
            raise ValueError(f"residual_loss '{residual_loss}': not in {sorted(LOSSES)}")
        prior = task_posterior(state, features) @ mu  # the task prior alone (no kNN:
        # a training prompt is its own nearest neighbour)
        residual = _fit_residual(
            jnp.asarray(features),
            _logit(jnp.asarray(prior)),
            jnp.asarray(quality, jnp.float32),
            jnp.asarray(cost, jnp.float32),
            loss=residual_loss,
            steps=int(residual_steps),
            learning_rate=float(residual_learning_rate),
            l2=float(residual_l2),
        )
        state = dataclasses.replace(state, residual=residual)
    weights = tuple(float(w) for w in blend_weights)
    if not weights or any(not 0.0 <= w <= 1.0 for w in weights):
        raise ValueError(f"blend_weights {blend_weights}: need one or more weights in [0, 1]")
    if cost_margin < 0 or cost_margin_z < 0:
        raise ValueError(f"cost_margin {cost_margin} and cost_margin_z {cost_margin_z}: need >= 0")
    mlp_ws = tuple(float(v) for v in mlp_weights) if mlp_hidden > 0 else (0.0,)
    if not mlp_ws or any(not 0.0 <= v < 1.0 for v in mlp_ws):
        raise ValueError(f"mlp_weights {mlp_weights}: need one or more weights in [0, 1)")
    mlp_kwargs = dict(
        hidden=int(mlp_hidden),
        steps=int(mlp_steps),
        learning_rate=float(mlp_learning_rate),
        weight_decay=float(mlp_weight_decay),
        seed=seed,
    )
    k = int(min(blend_k, features.shape[0])) if min(weights) < 1.0 else 0
    if not _candidate_pairs(weights, mlp_ws, k > 0):
        raise ValueError(
            f"blend_weights {weights} and mlp_weights {mlp_ws}: no pair with w + v <= 1 "
            "(the neighbours take 1 - w - v)"
        )
    margin, chosen, chosen_v, selection = float(cost_margin), weights[0], mlp_ws[0], None
    if len(weights) > 1 or len(mlp_ws) > 1 or cost_margin_z > 0 or calibrate_temperature:
        (chosen, chosen_v), margin, selection = select_blend_and_margin(
            features,
            quality,
            cost,
            tasks,
            fit_kwargs=dict(
                steps=steps,
                learning_rate=learning_rate,
                weight_decay=weight_decay,
                prior_strength=prior_strength,
                temperature=temperature,
                knn_k=knn_k,
                knn_strength=knn_strength,
                residual_loss=residual_loss,
                residual_steps=residual_steps,
                residual_learning_rate=residual_learning_rate,
                residual_l2=residual_l2,
                seed=seed,
            ),
            blend_k=k,
            weights=weights,
            margin=float(cost_margin) if cost_margin_z == 0 else None,
            z=float(cost_margin_z),
            calibrate=bool(calibrate_temperature),
            folds=int(cv_folds),
            seed=seed,
            mlp_weights=mlp_ws,
            mlp_kwargs=mlp_kwargs,
        )
    if k == 0:  # without neighbours the prior takes what the MLP leaves
        chosen = 1.0 - chosen_v
    mlp = fit_prompt_mlp(features, quality, **mlp_kwargs) if chosen_v > 0 else None
    if chosen + chosen_v < 1.0 and k > 0:
        state = dataclasses.replace(
            state,
            train_features=features,
            train_quality=np.asarray(quality, np.float32),
            train_cost=np.asarray(cost, np.float32),
        )
    if selection is not None and calibrate_temperature:
        state = dataclasses.replace(state, temperature=selection["temperature"])
    return dataclasses.replace(
        state,
        blend_weight=float(chosen),
        blend_k=k if chosen + chosen_v < 1.0 else 0,
        cost_margin=margin,
        selection=selection,
        mlp=mlp,
        mlp_weight=float(chosen_v),
    )


#: Posterior temperatures tried by ``calibrate_temperature``.
TEMPERATURE_GRID = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)

#: Cost margins tried by :func:`select_blend_and_margin` (quality per relative cost).
MARGIN_GRID = tuple(round(0.005 * i, 3) for i in range(41))


def _blend3(w: float, v: float, prior, near, mlp, prior_c, near_c):
    """Scores ``w · prior + v · mlp + (1 − w − v) · near`` and the matching costs.

    The MLP predicts no cost: the cost is the prior's and the neighbours' in the
    proportions ``w : (1 − w − v)``.
    """
    rest = 1.0 - w - v
    s = w * np.asarray(prior) + rest * np.asarray(near)
    if v > 0:
        s = s + v * np.asarray(mlp)
    c = (w * np.asarray(prior_c) + rest * np.asarray(near_c)) / (w + rest)
    return s, c


def _candidate_pairs(weights, mlp_weights, neighbours: bool) -> list[tuple[float, float]]:
    """The ``(w, v)`` pairs of prior and MLP weights that a blend can take: with
    neighbours every pair with ``w + v ≤ 1``; without, the prior takes what the MLP
    leaves (``w = 1 − v``)."""
    if neighbours:
        return [(w, v) for w in weights for v in mlp_weights if w + v <= 1.0 + 1e-9]
    return sorted({(1.0 - v, v) for v in mlp_weights})


def _candidate_key(w: float, v: float, with_mlp: bool) -> str:
    """Selection-record key of a candidate: ``"w"``, or ``"w+mlpV"`` with an MLP."""
    return f"{w}+mlp{v}" if with_mlp else str(w)


def _routed_quality(quality: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-prompt quality of the top-scored model (the rule at the largest budget)."""
    return quality[np.arange(len(quality)), np.argmax(scores, axis=1)].astype(np.float64)


def with_margin(scores: np.ndarray, pred_costs: np.ndarray, margin: float) -> np.ndarray:
    """``s − margin · ĉ / max_m ĉ``: a cost tie-break in quality units, per prompt.

    >>> with_margin(np.array([[0.80, 0.81]]), np.array([[1.0, 4.0]]), 0.02).round(3).tolist()
    [[0.795, 0.79]]
    """
    top = np.maximum(pred_costs.max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return (scores - margin * pred_costs / top).astype(np.float32)


def _lambda_cost_ratio(scores, pred_costs, quality, cost, best: int) -> float:
    """CR of the λ rule at the best single model's quality (``inf``: not reached)."""
    from jaxroute import routing as jr
    from jaxroute.routing import metrics as M

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
    fit_kwargs,
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

    Each of ``folds`` folds of the training prompts is predicted by the task prior (and
    the ``blend_k`` nearest neighbours) fitted on the other folds. With ``calibrate``,
    the posterior temperature is the grid value of least task cross-entropy on these
    predictions (and the predictions below use it). The weight is the
    candidate of ``weights`` whose λ rule reaches the best single model's mean quality
    at the lowest cost on these predictions (ties, such as none reaching it: the highest
    quality at λ = 0, then the first). With ``margin=None`` the
    margin is the largest of :data:`MARGIN_GRID` (stopping at the first failure) whose
    routing at the largest budget beats the best single model by ``z`` standard errors
    of the per-prompt quality difference. Only training prompts are read.

    With ``mlp_weights`` other than ``(0,)`` a :class:`PromptMLP` (``mlp_kwargs``) is
    fitted per fold too, and the candidates are the pairs ``(w, v)`` of a prior weight
    and an MLP weight (see :func:`fit_task_prior`).

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
    from jaxroute.models.knn import knn_predict
    from jaxroute.routing.reference import best_single_model

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
        sub = fit_task_prior(features[rest], quality[rest], cost[rest], tasks[rest], **fit_kwargs)
        subs.append((held, rest, sub))
    temperature, nll = float(fit_kwargs.get("temperature", 1.0)), None
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
            mlp_s[held] = _mlp_predict(fitted, features[held])
    best = best_single_model(quality, cost)
    pairs = _candidate_pairs(weights, mlp_weights, blend_k > 0)
    tried, top = {}, {}
    for w, v in pairs:
        s, c = _blend3(w, v, prior_s, near_s, mlp_s, prior_c, near_c)
        tried[w, v] = _lambda_cost_ratio(s, c, quality, cost, best)
        top[w, v] = float(_routed_quality(quality, s).mean())
    # Lowest CR; among equal ones (e.g. none reaches the target) the best quality at λ = 0.
    weight, mlp_weight = min(pairs, key=lambda p: (tried[p], -top[p]))
    s, c = _blend3(weight, mlp_weight, prior_s, near_s, mlp_s, prior_c, near_c)
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
        "lambda_cost_ratio": {_candidate_key(*p, with_mlp): float(v) for p, v in tried.items()},
        "quality_at_lambda_0": {_candidate_key(*p, with_mlp): v for p, v in top.items()},
        "weight": float(weight),
        "mlp_weight": float(mlp_weight),
        "margin": float(margin),
        "margin_z": float(z) if bounds is not None else None,
        "margin_lower_bound": None if bounds is None else {str(m): v for m, v in bounds.items()},
    }
    return (float(weight), float(mlp_weight)), float(margin), selection


@functools.partial(jax.jit, static_argnames=("num_tasks",))
def _posterior(params, x, temperature, *, num_tasks):
    return jax.nn.softmax(TaskHead(num_tasks).apply(params, _normalise(x)) / temperature)


def task_posterior(state: TaskPriorState, x: np.ndarray) -> np.ndarray:
    """``p(t | x)``, ``[N, T]``, over ``state.task_names``."""
    x = jnp.asarray(np.asarray(x, np.float32))
    return np.asarray(
        _posterior(state.params, x, jnp.float32(state.temperature), num_tasks=state.num_tasks)
    )


def predict_task_prior(state: TaskPriorState, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores and predicted costs ``[N, M]``: posterior means of quality and cost.

    With ``state.knn_k > 0`` each score is the Beta-binomial posterior mean of the k
    nearest training prompts' qualities under the task prior (``a·k`` pseudo-prompts):
    ``(k · kNN mean + a·k · prior) / (k + a·k)``; the cost stays the prior's.
    """
    p = task_posterior(state, x)
    scores = p @ state.quality
    if state.knn_k > 0:
        from jaxroute.models.knn import knn_predict

        near, _ = knn_predict(
            state.train_features, state.train_quality, state.train_cost, x, k=state.knn_k
        )
        a = state.knn_strength
        scores = (np.asarray(near) + a * scores) / (1.0 + a)
    if state.residual is not None:
        m = state.quality.shape[1]
        r = Residual(m).apply(state.residual, _scaled(jnp.asarray(np.asarray(x, np.float32))))
        scores = np.asarray(jax.nn.sigmoid(_logit(jnp.asarray(scores)) + r))
    costs = p @ state.cost
    w, v = state.blend_weight, state.mlp_weight
    near_q, near_c = scores, costs  # without neighbours w + v = 1: unused
    if state.blend_k > 0 and w + v < 1.0:
        from jaxroute.models.knn import knn_predict

        near_q, near_c = knn_predict(
            state.train_features, state.train_quality, state.train_cost, x, k=state.blend_k
        )
    if w < 1.0:
        mlp = _mlp_predict(state.mlp, x) if v > 0 else None
        scores, costs = _blend3(w, v, scores, near_q, mlp, costs, near_c)
    scores, costs = np.asarray(scores, np.float32), np.asarray(costs, np.float32)
    if state.cost_margin > 0:
        scores = with_margin(scores, costs, state.cost_margin)
    return scores, costs


# ------------------------------------------------------------------ router table pair
def taskprior_fit(train, rc) -> TaskPriorState:
    """The router table's ``fit``: a seed's training part (RoutingData) and config entry."""
    state = _fit_from_config(train, rc)
    if state.selection is not None:
        from absl import logging

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
    return state


def taskprior_choices(state: TaskPriorState) -> dict | None:
    """The router table's ``choices``: what ``fit`` chose on cross-fitted predictions.

    ``temperature``, ``blend_weight``, ``mlp_weight``, ``cost_margin`` and ``blend_k``
    are the fitted router's own values; ``folds`` and the cross-fitted scores that chose them are
    :func:`select_blend_and_margin`'s (``task_nll``, ``lambda_cost_ratio``,
    ``quality_at_lambda_0``, ``margin_z``, ``margin_lower_bound``). None when nothing was
    chosen (one weight, a fixed margin and temperature).
    """
    sel = state.selection
    if sel is None:
        return None
    scores = ("task_nll", "lambda_cost_ratio", "quality_at_lambda_0", "margin_z")
    return {
        "temperature": float(state.temperature),
        "blend_weight": float(state.blend_weight),
        "mlp_weight": float(state.mlp_weight),
        "cost_margin": float(state.cost_margin),
        "blend_k": int(state.blend_k),
        "folds": int(sel["folds"]),
        **{k: sel[k] for k in (*scores, "margin_lower_bound")},
    }


def _fit_from_config(train, rc) -> TaskPriorState:
    from jaxroute.models.table import router_spec

    # A config written before a field existed gets the field's table default.
    f = {**router_spec("taskprior").fields, **rc}
    return fit_task_prior(
        train.features,
        train.quality,
        train.cost,
        train.tasks,
        steps=int(f["steps"]),
        learning_rate=float(f["head_learning_rate"]),
        weight_decay=float(f["head_weight_decay"]),
        prior_strength=float(f["prior_strength"]),
        temperature=float(f["temperature"]),
        knn_k=int(f["knn_k"]),
        knn_strength=float(f["knn_strength"]),
        residual_loss=str(f["residual_loss"]),
        residual_steps=int(f["residual_steps"]),
        residual_learning_rate=float(f["residual_learning_rate"]),
        residual_l2=float(f["residual_l2"]),
        blend_k=int(f["blend_k"]),
        blend_weights=tuple(f["blend_weights"]),
        cost_margin=float(f["cost_margin"]),
        cost_margin_z=float(f["cost_margin_z"]),
        calibrate_temperature=bool(f["calibrate_temperature"]),
        cv_folds=int(f["cv_folds"]),
        mlp_hidden=int(f["mlp_hidden"]),
        mlp_steps=int(f["mlp_steps"]),
        mlp_learning_rate=float(f["mlp_learning_rate"]),
        mlp_weight_decay=float(f["mlp_weight_decay"]),
        mlp_weights=tuple(f["mlp_weights"]),
    )


def taskprior_predict(state: TaskPriorState, x, rc) -> tuple[np.ndarray, np.ndarray]:
    """The router table's ``predict``: ``(scores, own predicted costs)``."""
    del rc
    return predict_task_prior(state, x)
