"""The fitted task-posterior router: its parts' fits, its state and its prediction.

The parts (see :mod:`jaxroute.models.taskprior` for the router as a whole):

- the *task prior*: a linear softmax task head ``p(t | x)`` (:class:`TaskHead`) fitted
  to the training prompts' task labels (full-batch AdamW, one ``lax.scan`` under
  ``jit``), and per task ``t`` and model ``m`` the mean quality ``μ[t, m]`` (shrunk to
  the model's overall mean with ``prior_strength`` pseudo-prompts) and mean cost
  ``c̄[t, m]``; a prompt gets ``s(x) = Σ_t p(t|x) μ[t]`` and ``ĉ(x) = Σ_t p(t|x) c̄[t]``
  (:func:`fit_prior`);
- optionally a per-prompt MLP (the project's :class:`MLPRegressor`, one hidden layer,
  sigmoid outputs trained with BCE on the quality; :func:`fit_prompt_mlp`);
- optionally the mean of the ``blend_k`` nearest training prompts (kNN);
- optionally the item-response model of :mod:`jaxroute.models.irt` (its probabilities
  ``σ(z)``, mixed in with weight ``irt_weight``; its costs are not read).

:func:`predict_task_prior` blends them with the weights the state holds
(:mod:`jaxroute.models.taskprior_blend`) and subtracts the cost margin. Only the
prompt's features are read at prediction time.
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

from jaxroute.models.irt import model_probabilities
from jaxroute.models.knn import knn_predict
from jaxroute.models.regressors import MLPRegressor, dense
from jaxroute.models.taskprior_blend import blend3, with_irt, with_margin

_NORM_EPS = 1e-12


class TaskHead(nn.Module):
    """Linear task classifier: features ``[B, D]`` to task logits ``[B, T]``."""

    num_tasks: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return dense(self.num_tasks, name="out")(x)


class PromptMLP(MLPRegressor):
    """The per-prompt MLP: :class:`MLPRegressor` with ``hidden_sizes=(H,)`` and
    ``activation="gelu_tanh"``; its hidden layer is named ``"hidden"`` (the name seeds
    Flax's initialiser, so fitted numbers stay those of the router's first MLP)."""

    layer_name = "hidden"


def _prompt_mlp(num_models: int, hidden: int) -> PromptMLP:
    return PromptMLP(num_models, hidden_sizes=(hidden,), activation="gelu_tanh")


def _normalise(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _NORM_EPS)


def _minimise(objective, params, tx, steps: int):
    """``steps`` full-batch steps of ``tx`` on ``objective`` in one ``lax.scan``."""

    def step(carry, _):
        p, opt = carry
        updates, opt = tx.update(jax.grad(objective)(p), opt, p)
        return (optax.apply_updates(p, updates), opt), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params


# ------------------------------------------------------------------ the per-prompt MLP
@functools.partial(jax.jit, static_argnames=("hidden", "steps"))
def _fit_mlp(key, x, quality, *, hidden, steps, learning_rate, weight_decay):
    """Full-batch AdamW on the mean BCE of sigmoid outputs against quality in [0, 1]."""
    module = _prompt_mlp(quality.shape[1], hidden)
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
    return jax.nn.sigmoid(_prompt_mlp(num_models, hidden).apply(params, _normalise(x)))


def mlp_predict(params, x: np.ndarray) -> np.ndarray:
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


# ------------------------------------------------------------------ the task prior
@dataclasses.dataclass(frozen=True)
class TaskPriorState:
    """A fitted task-posterior router (arrays and scalars; ``params`` and ``mlp`` are
    Flax variables). Stored in the workdir as such (:mod:`jaxroute.models.fitted`).

    Its size is bounded by the training part: float32 arrays of the head (``D·T + T``),
    the per-task statistics (``2·T·M``), the MLP when its weight is > 0 (``D·H + H +
    H·M + M``) and the training prompts when neighbours are blended (``N·(D + 2M)``, as
    kNN keeps). With every part, 384-d features, 12 tasks and H = 256: 10.2 MB for
    6,108 prompts × 9 models, 21.5 MB for 12,000 × 27; the task prior alone, about 20 KB.
    The item-response model, when its weight is > 0, adds its variables (hidden 32,
    4 skills, 384-d features, 14 tasks, 27 models: 74 KB).
    """

    params: Any
    num_tasks: int
    task_names: tuple[str, ...]
    quality: np.ndarray  # [T, M] shrunk per-task mean quality
    cost: np.ndarray  # [T, M] per-task mean cost
    temperature: float
    # The training prompts, kept when the blend reads their nearest neighbours.
    train_features: np.ndarray | None = None
    train_quality: np.ndarray | None = None
    train_cost: np.ndarray | None = None
    # The blend w · prior + v · MLP + (1 − w − v) · neighbours and the cost margin, as
    # chosen by cross-fitting (jaxroute.models.selection) or given.
    blend_weight: float = 1.0
    blend_k: int = 0
    cost_margin: float = 0.0
    selection: dict | None = None
    mlp: Any = None
    mlp_weight: float = 0.0
    # (1 − u) · blend + u · the item-response model's probabilities (irt.model_of; kept
    # only when u > 0).
    irt: Any = None
    irt_weight: float = 0.0


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


def fit_prior(features, quality, cost, tasks, cfg, seed: int = 0) -> TaskPriorState:
    """The task prior alone (no blend, no margin) on training prompts.

    Args:
      features: ``[N, D]`` training features (rows are L2-normalised inside).
      quality, cost: ``[N, M]`` training quality and cost.
      tasks: ``[N]`` task labels of the training prompts (any hashable strings).
      cfg: a :class:`~jaxroute.models.taskprior_config.TaskPriorConfig` (the head's
        ``steps``, ``head_learning_rate``, ``head_weight_decay``; ``prior_strength``;
        ``temperature``).
      seed: the head's initialisation.
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
        steps=int(cfg.steps),
        learning_rate=float(cfg.head_learning_rate),
        weight_decay=float(cfg.head_weight_decay),
    )
    mu, cbar = task_statistics(quality, cost, task_ids, num_tasks, float(cfg.prior_strength))
    return TaskPriorState(
        params=params,
        num_tasks=num_tasks,
        task_names=tuple(str(n) for n in names),
        quality=mu,
        cost=cbar,
        temperature=float(cfg.temperature),
    )


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
    """Scores and predicted costs ``[N, M]``: the task prior's posterior means of quality
    and cost, blended with the MLP and the neighbours, then with the item-response
    model's probabilities, minus the cost margin."""
    p = task_posterior(state, x)
    scores = p @ state.quality
    costs = p @ state.cost
    w, v = state.blend_weight, state.mlp_weight
    near_q, near_c = scores, costs  # without neighbours w + v = 1: unused
    if state.blend_k > 0 and w + v < 1.0:
        near_q, near_c = knn_predict(
            state.train_features, state.train_quality, state.train_cost, x, k=state.blend_k
        )
    if w < 1.0:
        mlp = mlp_predict(state.mlp, x) if v > 0 else None
        scores, costs = blend3(w, v, scores, near_q, mlp, costs, near_c)
    scores, costs = np.asarray(scores, np.float32), np.asarray(costs, np.float32)
    if state.irt_weight > 0:
        scores = with_irt(scores, model_probabilities(state.irt, x), state.irt_weight)
    if state.cost_margin > 0:
        scores = with_margin(scores, costs, state.cost_margin)
    return scores, costs
