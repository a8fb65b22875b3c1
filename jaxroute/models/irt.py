"""Item-response router: per question a difficulty, a discrimination and a skill mix.

A two-parameter-logistic item-response model (docs/question_routing.md) whose item
parameters come from the question's features, so that a new question gets them too:

.. math:: z_{x,m} = a(x)\\,\\big(\\beta_m + p(x)^\\top \\Gamma_{:,m}
          + u(x)^\\top \\Theta_{:,m} - d(x)\\big), \\qquad P(m \\text{ right on } x)
          = \\sigma(z_{x,m})

- ``d(x)``: the question's difficulty, one head shared by the M models (every model's
  answer is evidence about it, so it is learned from M labels per question);
- ``a(x) > 0``: its discrimination (how sharply ability decides the answer);
- ``p(x)``: a softmax over the training tasks (a linear task head, fitted to the task
  labels with a cross-entropy term), and ``Γ[t, m]`` model ``m``'s ability on task ``t``;
- ``u(x)``: ``skills`` latent skill loadings of the question and ``Θ[:, m]`` the model's
  ability on each (matrix factorisation with the question as input).

The module is trained by gradient, full batch (one ``lax.scan`` under ``jit``), through
a loss of ``jaxroute.losses.LOSSES`` on the logits (``bce``; ``bce_wtp`` adds the λ
rule's regret) plus ``task_weight`` times the task cross-entropy; AdamW's weight decay
and the step count regularise it. Scores are the success probabilities ``σ(z)`` (the
quality scale of both decision rules); the predicted cost of a model is the mean cost
of the ``cost_k`` nearest training prompts (as kNN's). At test time only the features
are read. Nothing depends on a dataset's name, size or model list.
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

from jaxroute.losses import LOSSES
from jaxroute.models.knn import knn_predict
from jaxroute.models.regressors import dense
from jaxroute.models.table import router_spec

_NORM_EPS = 1e-12
#: Losses of ``LOSSES`` that read logits; any other reads the probabilities ``σ(z)``.
LOGIT_LOSSES = ("bce", "bce_wtp", "irt")


def _normalise(x: jax.Array) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), _NORM_EPS)


class IRTRouter(nn.Module):
    """Features ``[B, D]`` -> ``(logits [B, M], task logits [B, T])`` (module docstring).

    Attributes:
      num_models: candidate models ``M``.
      num_tasks: training tasks ``T`` (1: no task structure).
      hidden: width of the shared trunk ``Dense(hidden) → GELU``.
      skills: latent skills ``K`` (0: none).

    >>> m = IRTRouter(num_models=3, num_tasks=2, hidden=8, skills=2)
    >>> v = jax.jit(m.init)(jax.random.key(0), jnp.ones((1, 4)))
    >>> [a.shape for a in m.apply(v, jnp.ones((5, 4)))]
    [(5, 3), (5, 2)]
    """

    num_models: int
    num_tasks: int = 1
    hidden: int = 256
    skills: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = _normalise(x)
        h = nn.gelu(dense(self.hidden, name="trunk")(x), approximate=False)
        difficulty = dense(1, name="difficulty")(h)  # [B, 1]
        # softplus(0 + log(e - 1)) = 1: the discrimination starts at 1.
        discrimination = nn.softplus(dense(1, name="discrimination")(h) + np.log(np.e - 1.0))
        bias = self.param("ability", nn.initializers.zeros_init(), (self.num_models,))
        task_logits = dense(self.num_tasks, name="task")(x)
        task_ability = self.param(
            "task_ability", nn.initializers.zeros_init(), (self.num_tasks, self.num_models)
        )
        ability = bias[None, :] + jax.nn.softmax(task_logits) @ task_ability
        if self.skills > 0:
            loadings = dense(self.skills, name="skills")(h)  # [B, K]
            theta = self.param(
                "skill_ability", nn.initializers.normal(0.1), (self.skills, self.num_models)
            )
            ability = ability + loadings @ theta
        return discrimination * (ability - difficulty), task_logits


@functools.partial(
    jax.jit,
    static_argnames=("num_models", "num_tasks", "hidden", "skills", "loss", "steps", "check"),
)
def _fit(
    key,
    x,
    quality,
    cost,
    task_ids,
    rows,
    *,
    num_models,
    num_tasks,
    hidden,
    skills,
    loss,
    steps,
    check,
    learning_rate,
    weight_decay,
    task_weight,
    val_fraction,
):
    """Full-batch AdamW on ``loss(z) + task_weight · CE``, early-stopped; ``rows`` [N]
    masks padding.

    A random ``val_fraction`` of the rows is held out; the model is trained on the rest
    for ``steps`` steps, its held-out loss read every ``check`` steps; then it is trained
    again from the same initialisation on every row for the number of steps whose
    held-out loss was least (``val_fraction = 0``: all ``steps``). Returns the variables
    and that step count. Pure in its array arguments, so ``jax.vmap`` fits many training
    sets (folds, seeds) of one padded size at once.
    """
    init_key, val_key = jax.random.split(key)
    module = IRTRouter(num_models, num_tasks, hidden, skills)
    params0 = module.init(init_key, x[:1])
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    fn = LOSSES[loss]
    onehot = jax.nn.one_hot(task_ids, num_tasks)
    held = rows * (jax.random.uniform(val_key, rows.shape) < val_fraction)

    def objective(p, r):
        z, task_logits = module.apply(p, x)
        scores = z if loss in LOGIT_LOSSES else jax.nn.sigmoid(z)
        where = jnp.broadcast_to(r[:, None] > 0, quality.shape)
        ce = -jnp.sum(r * jnp.sum(onehot * jax.nn.log_softmax(task_logits), -1))
        ce = ce / jnp.maximum(r.sum(), 1.0)
        return fn(scores, quality, costs=cost, where=where), ce

    def total(p, r):
        fit, ce = objective(p, r)
        return fit + task_weight * ce

    def train(r, stop):
        def step(carry, i):
            p, opt = carry
            grads = jax.grad(total)(p, r)
            updates, new_opt = tx.update(grads, opt, p)
            keep = i < stop  # steps past the stop leave the state as it is
            new = (optax.apply_updates(p, updates), new_opt)
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, (p, opt)), None

        def chunk(carry, c):
            carry, _ = jax.lax.scan(step, carry, c * check + jnp.arange(check))
            return carry, objective(carry[0], held)[0]

        (p, _), losses = jax.lax.scan(
            chunk, (params0, tx.init(params0)), jnp.arange(steps // check)
        )
        return p, losses

    _, losses = train(rows - held, steps)
    chosen = jnp.where(held.sum() > 0, (jnp.argmin(losses) + 1) * check, steps)
    params, _ = train(rows, chosen)
    return params, chosen


@functools.partial(jax.jit, static_argnames=("num_models", "num_tasks", "hidden", "skills"))
def _probabilities(params, x, *, num_models, num_tasks, hidden, skills):
    z, _ = IRTRouter(num_models, num_tasks, hidden, skills).apply(params, x)
    return jax.nn.sigmoid(z)


@dataclasses.dataclass(frozen=True)
class IRTState:
    """A fitted item-response router: the module's variables and its shape fields, and
    the training prompts for the neighbours' cost estimate."""

    params: Any
    num_models: int
    num_tasks: int
    hidden: int
    skills: int
    steps: int  # the early-stopped step count
    task_names: tuple[str, ...]
    cost_k: int
    knn_weight: float
    train_features: np.ndarray
    train_quality: np.ndarray
    train_cost: np.ndarray


def task_index(tasks) -> tuple[tuple[str, ...], np.ndarray]:
    """``(sorted task names, [N] int32 index of each prompt's task)``."""
    names, ids = np.unique(np.asarray([str(t) for t in tasks]), return_inverse=True)
    return tuple(str(n) for n in names), ids.astype(np.int32)


def fit_irt(
    features,
    quality,
    cost,
    tasks,
    *,
    hidden: int = 256,
    skills: int = 8,
    loss: str = "bce",
    steps: int = 400,
    check: int = 25,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-2,
    task_weight: float = 1.0,
    val_fraction: float = 0.2,
    cost_k: int = 100,
    knn_weight: float = 0.0,
    seed: int = 0,
) -> IRTState:
    """Fits :class:`IRTRouter` on training prompts (see the module docstring).

    Args:
      features, quality, cost: ``[N, D]``, ``[N, M]``, ``[N, M]`` training arrays.
      tasks: ``[N]`` task labels of the training prompts.
      hidden, skills: the module's trunk width and latent skills.
      loss: a key of ``jaxroute.losses.LOSSES`` (on logits for ``LOGIT_LOSSES``).
      steps, learning_rate, weight_decay: the full-batch AdamW schedule; ``steps`` is
        the most, rounded down to a multiple of ``check``.
      check: steps between two reads of the held-out loss.
      val_fraction: part of the training prompts held out to choose the step count
        (early stopping; the model is then refitted on all of them).
      task_weight: weight of the task cross-entropy (0: the task head learns only
        through the loss).
      cost_k: neighbours whose mean cost is the predicted cost.
      knn_weight: weight ``w`` of those neighbours' mean quality in the score,
        ``(1 − w) · σ(z) + w · kNN`` (0: the item-response model alone).
      seed: the initialisation.
    """
    features = np.asarray(features, np.float32)
    quality = np.asarray(quality, np.float32)
    cost = np.asarray(cost, np.float32)
    if features.ndim != 2 or features.shape[0] != quality.shape[0] != len(tasks):
        raise ValueError(
            f"fit_irt: features {features.shape}, quality {quality.shape} and "
            f"{len(tasks)} task labels do not match"
        )
    if loss not in LOSSES:
        raise ValueError(f"fit_irt: loss '{loss}' not in {sorted(LOSSES)}")
    names, ids = task_index(tasks)
    shape = {"num_models": quality.shape[1], "num_tasks": len(names)}
    shape.update(hidden=int(hidden), skills=int(skills))
    if not 0.0 <= knn_weight <= 1.0:
        raise ValueError(f"fit_irt: knn_weight must be in [0, 1], got {knn_weight}")
    if not 0.0 <= val_fraction < 1.0 or check < 1 or steps < check:
        raise ValueError(
            f"fit_irt: need 0 <= val_fraction < 1 and 1 <= check <= steps, got "
            f"val_fraction={val_fraction}, check={check}, steps={steps}"
        )
    params, chosen = _fit(
        jax.random.key(seed),
        jnp.asarray(features),
        jnp.asarray(quality),
        jnp.asarray(cost),
        jnp.asarray(ids),
        jnp.ones(len(ids), jnp.float32),
        loss=loss,
        steps=int(steps) // int(check) * int(check),
        check=int(check),
        learning_rate=float(learning_rate),
        weight_decay=float(weight_decay),
        task_weight=float(task_weight),
        val_fraction=float(val_fraction),
        **shape,
    )
    return IRTState(
        params=params,
        steps=int(chosen),
        task_names=names,
        cost_k=int(min(cost_k, len(features))),
        knn_weight=float(knn_weight),
        train_features=features,
        train_quality=quality,
        train_cost=cost,
        **shape,
    )


def predict_irt(state: IRTState, x) -> tuple[np.ndarray, np.ndarray]:
    """Scores (success probabilities) and predicted costs, ``[N, M]`` each."""
    x = np.asarray(x, np.float32)
    shape = {k: getattr(state, k) for k in ("num_models", "num_tasks", "hidden", "skills")}
    scores = _probabilities(state.params, jnp.asarray(x), **shape)
    near, costs = knn_predict(
        state.train_features, state.train_quality, state.train_cost, x, k=state.cost_k
    )
    w = state.knn_weight
    scores = (1.0 - w) * np.asarray(scores) + w * np.asarray(near) if w > 0 else scores
    return np.asarray(scores, np.float32), np.asarray(costs, np.float32)


#: What another router keeps of a fitted :class:`IRTState` to blend its probabilities in
#: (``taskprior``'s ``irt_weights``): the variables and shape fields, no training prompts.
MODEL_FIELDS = ("params", "num_models", "num_tasks", "hidden", "skills", "steps")


def model_of(state: IRTState) -> dict:
    """The :data:`MODEL_FIELDS` of a fitted state, as a dict (stored as arrays and JSON)."""
    return {k: getattr(state, k) for k in MODEL_FIELDS}


def model_probabilities(model, x) -> np.ndarray:
    """Success probabilities ``σ(z)`` ``[N, M]`` of a :func:`model_of` dict on features."""
    shape = {k: int(model[k]) for k in ("num_models", "num_tasks", "hidden", "skills")}
    x = jnp.asarray(np.asarray(x, np.float32))
    return np.asarray(_probabilities(model["params"], x, **shape), np.float32)


# ------------------------------------------------------------------ router table pair


def irt_fit(train, rc) -> IRTState:
    """The router table's ``fit``: a seed's training part (RoutingData) and config entry."""
    f = {**router_spec("irt").fields, **rc}  # a field a config lacks: the table default
    return fit_irt(
        train.features,
        train.quality,
        train.cost,
        train.tasks,
        hidden=int(f["hidden"]),
        skills=int(f["skills"]),
        loss=str(f["irt_loss"]),
        steps=int(f["irt_steps"]),
        check=int(f["irt_check_every"]),
        learning_rate=float(f["irt_learning_rate"]),
        weight_decay=float(f["irt_weight_decay"]),
        task_weight=float(f["task_weight"]),
        val_fraction=float(f["irt_val_fraction"]),
        cost_k=int(f["cost_k"]),
        knn_weight=float(f["knn_weight"]),
    )


def irt_choices(state: IRTState) -> dict:
    """The router table's ``choices``: the step count early stopping chose."""
    return {"steps": int(state.steps)}


def irt_predict(state: IRTState, x, rc) -> tuple[np.ndarray, np.ndarray]:
    """The router table's ``predict``: ``(scores, own predicted costs)``."""
    del rc
    return predict_irt(state, x)
