"""Decision-aware losses: expected regret of relaxed routing rules (docs/method.md §1, §5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike

from jaxroute.losses._utils import ReduceFn, list_weights, masked_softmax, prepare, safe_reduce

DEFAULT_LAMBDAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def _valid_cost_range(costs: jax.Array, where: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Smallest and largest valid cost in the batch (no gradient; (1, 1) if none valid)."""
    costs = jax.lax.stop_gradient(costs)
    lo = jnp.min(jnp.where(where, costs, jnp.inf))
    hi = jnp.max(jnp.where(where, costs, -jnp.inf))
    ok = jnp.any(where)
    return jnp.where(ok, lo, 1.0), jnp.where(ok, hi, 1.0)


def _log_bounds(costs: jax.Array, where: jax.Array) -> tuple[jax.Array, jax.Array]:
    lo, hi = _valid_cost_range(costs, where)
    lo = jnp.maximum(lo, 1e-12)
    hi = jnp.maximum(hi, lo)
    return jnp.log(lo), jnp.log(hi)


def log_spaced_budgets(
    costs: ArrayLike, num: int = 16, *, where: ArrayLike | None = None
) -> jax.Array:
    """``[num]`` budgets log-spaced from the cheapest to the dearest valid cost.

    >>> b = log_spaced_budgets(jnp.array([[1e-4, 1e-2]]), 3)
    >>> print([round(float(x), 6) for x in b])
    [0.0001, 0.001, 0.01]
    """
    costs = jnp.asarray(costs, dtype=jnp.result_type(float))
    where = jnp.ones(costs.shape, bool) if where is None else jnp.asarray(where, bool)
    log_lo, log_hi = _log_bounds(costs, where)
    return jnp.exp(jnp.linspace(log_lo, log_hi, num))


def sample_log_uniform_budgets(
    key: jax.Array, costs: ArrayLike, num: int = 16, *, where: ArrayLike | None = None
) -> jax.Array:
    """``[num]`` budgets drawn log-uniformly between the cheapest and dearest valid cost.

    >>> b = sample_log_uniform_budgets(jax.random.key(0), jnp.array([[1e-4, 1e-2]]), 5)
    >>> print(b.shape, bool(jnp.all((b >= 1e-4 * 0.999) & (b <= 1e-2 * 1.001))))
    (5,) True
    """
    costs = jnp.asarray(costs, dtype=jnp.result_type(float))
    where = jnp.ones(costs.shape, bool) if where is None else jnp.asarray(where, bool)
    log_lo, log_hi = _log_bounds(costs, where)
    u = jax.random.uniform(key, (num,), dtype=costs.dtype)
    return jnp.exp(log_lo + u * (log_hi - log_lo))


def _cheapest(costs: jax.Array, where: jax.Array) -> jax.Array:
    """``[..., M]`` bool: valid models of minimal cost in each list."""
    c_min = jnp.min(jnp.where(where, costs, jnp.inf), axis=-1, keepdims=True)
    return where & (costs <= c_min)


def _feasible(costs: jax.Array, where: jax.Array, budgets: jax.Array) -> jax.Array:
    """``[..., M, K]`` hard feasibility with the cheapest-model fallback (docs/method.md §1)."""
    feas = where[..., None] & (costs[..., None] <= budgets[..., None, :])
    none = ~jnp.any(feas, axis=-2, keepdims=True)
    return jnp.where(none, _cheapest(costs, where)[..., None], feas)


def _cost_scale(costs: jax.Array, where: jax.Array, cost_scale: float | None) -> jax.Array:
    if cost_scale is not None:
        return jnp.asarray(cost_scale, costs.dtype)
    _, hi = _valid_cost_range(costs, where)
    return jnp.where(hi > 0, hi, 1.0)


def budget_regret_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    pred_costs: ArrayLike | None = None,
    budgets: ArrayLike | None = None,
    num_budgets: int = 16,
    temperature: float = 0.1,
    cost_temperature: float | None = None,
    cost_weight: float = 0.05,
    cost_scale: float | None = None,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Expected regret of a softmax relaxation of the budget rule, over many budgets.

    For each budget ``B`` the router's rule ``π_B(x) = argmax_{m: ĉ_m ≤ B} s_m`` is
    relaxed to ``p_B = softmax(s / T)`` over the models feasible under the predicted
    costs ``ĉ`` (hard mask; if none is feasible, the cheapest predicted model(s), as in
    docs/method.md §1). With ``cost_temperature`` set, feasibility is instead the soft factor
    ``sigmoid((B - ĉ) / cost_temperature)`` (``p_B ∝ exp(s/T) · sigmoid(...)``), which
    also passes gradients to ``pred_costs``. The oracle takes the best utility
    affordable under the true costs (cheapest true model if none is):

    .. math:: u_m = y_m - \kappa\, c_m / c_{\text{scale}}, \qquad
        \ell_b = \operatorname{mean}_B \Big[\max_{m:\ c_m \le B} u_m
        - \sum_m p_{B,m} u_m\Big]

    The small cost weight ``κ`` breaks quality ties towards the cheaper model, so that
    even at budgets where every model is affordable the loss prefers the cost-aware
    oracle (the routing-collapse regime). With ``ĉ = c`` the loss is >= 0.

    Args:
      scores: ``[..., M]`` predicted scores (quality scale).
      labels: ``[..., M]`` true qualities.
      costs: ``[..., M]`` true costs (required).
      pred_costs: optional ``[..., M]`` predicted costs for the rule (default: ``costs``).
      budgets: ``[K]`` or ``[..., K]`` budgets; None: ``num_budgets`` log-spaced from the
        cheapest to the dearest valid cost of the batch (see also
        :func:`sample_log_uniform_budgets`).
      num_budgets: number of default budgets.
      temperature: softmax temperature ``T`` on the scores.
      cost_temperature: None for the hard feasibility mask, else the sigmoid temperature
        (in cost units).
      cost_weight: ``κ``, the tie-breaking cost weight in the oracle utility.
      cost_scale: ``c_scale``; None: the dearest valid cost of the batch (no gradient).
      where: optional ``[..., M]`` bool mask; masked models are never chosen.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` over lists with a valid model, ``jnp.sum``, or None.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> s, y = jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0])
    >>> c = jnp.array([1.0, 2.0])
    >>> # one budget, both affordable: regret = u_0 - sum p u, u = (1 - .025, 1 - .05).
    >>> loss = budget_regret_loss(s, y, costs=c, budgets=jnp.array([5.0]), temperature=1.0)
    >>> print(round(float(loss), 4))
    0.0183
    """
    if costs is None:
        raise ValueError("budget_regret_loss needs costs=[..., M] (true costs).")
    scores, labels, costs, where = prepare(scores, labels, costs, where)
    c_hat = costs if pred_costs is None else jnp.where(where, jnp.asarray(pred_costs), 0.0)
    batch = scores.shape[:-1]
    if budgets is None:
        budgets = log_spaced_budgets(costs, num_budgets, where=where)
    budgets = jnp.asarray(budgets, scores.dtype)
    budgets = jnp.broadcast_to(budgets, batch + budgets.shape[-1:])  # [..., K]
    scale = _cost_scale(costs, where, cost_scale)
    utility = labels - cost_weight * costs / scale  # [..., M]

    logits = jnp.broadcast_to((scores / temperature)[..., None], scores.shape + budgets.shape[-1:])
    if cost_temperature is None:
        allowed = _feasible(c_hat, where, budgets)
    else:
        allowed = jnp.broadcast_to(where[..., None], logits.shape)
        logits = logits + jax.nn.log_sigmoid(
            (budgets[..., None, :] - c_hat[..., None]) / cost_temperature
        )
    p = masked_softmax(logits, allowed, axis=-2)  # [..., M, K]
    value = jnp.sum(p * utility[..., None], axis=-2)  # [..., K]
    oracle_set = _feasible(costs, where, budgets)
    oracle = jnp.max(jnp.where(oracle_set, utility[..., None], -jnp.inf), axis=-2)
    regret = jnp.where(jnp.any(where, axis=-1, keepdims=True), oracle - value, 0.0)
    per_list = jnp.mean(regret, axis=-1)
    list_w = list_weights(weights, batch, scores.dtype)
    return safe_reduce(per_list, jnp.any(where, axis=-1), list_w, reduce_fn)


def wtp_regret_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    pred_costs: ArrayLike | None = None,
    lambdas: ArrayLike | None = None,
    temperature: float = 0.1,
    cost_scale: float | None = None,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Expected regret of the willingness-to-pay rule, over a set of prices ``λ``.

    Costs are put on the quality scale by ``c̃ = c / c_scale`` (``c_scale`` the dearest
    valid cost of the batch unless given). For each ``λ`` the rule
    ``π_λ = argmax_m s_m - λ ĉ̃_m`` is relaxed to ``p_λ = softmax((s - λ ĉ̃) / T)`` and
    compared with the oracle ``max_m y_m - λ c̃_m``:

    .. math:: \ell_b = \operatorname{mean}_\lambda \frac{1}{1 + \lambda}
        \Big[\max_m (y_m - \lambda \tilde c_m) - \sum_m p_{\lambda,m}
        (y_m - \lambda \tilde c_m)\Big]

    The ``1 / (1 + λ)`` factor keeps every price's regret in ``[0, 1]`` (for labels in
    ``[0, 1]`` and ``ĉ = c``). Small prices reward ranking the cheaper of two equally good
    models higher; large prices teach where quality is worth its cost. Scores are read on
    the quality scale, as the rule ``s - λ ĉ̃`` needs. Lists with no valid model give 0.

    Args:
      scores: ``[..., M]`` predicted scores (quality scale).
      labels: ``[..., M]`` true qualities.
      costs: ``[..., M]`` true costs (required).
      pred_costs: optional ``[..., M]`` predicted costs for the rule (default ``costs``).
      lambdas: ``[K]`` prices on the normalised cost scale (default
        ``DEFAULT_LAMBDAS`` = 0.01 ... 10, log-spaced).
      temperature: softmax temperature ``T``.
      cost_scale: ``c_scale``; None: the dearest valid cost of the batch (no gradient).
      where: optional ``[..., M]`` bool mask; masked models are never chosen.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` over lists with a valid model, ``jnp.sum``, or None.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    >>> s, y, c = jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0]), jnp.array([0.5, 1.0])
    >>> # λ = 1: utilities (0.5, 0); p ∝ exp(-(0.5, 1)); regret (0.5 - 0.5 p_0) / 2
    >>> loss = wtp_regret_loss(s, y, costs=c, lambdas=jnp.array([1.0]), temperature=1.0)
    >>> print(round(float(loss), 4))
    0.0944
    """
    if costs is None:
        raise ValueError("wtp_regret_loss needs costs=[..., M] (true costs).")
    scores, labels, costs, where = prepare(scores, labels, costs, where)
    c_hat = costs if pred_costs is None else jnp.where(where, jnp.asarray(pred_costs), 0.0)
    lam = jnp.asarray(DEFAULT_LAMBDAS if lambdas is None else lambdas, scores.dtype)  # [K]
    lam = jnp.broadcast_to(lam, scores.shape[:-1] + (1,) + lam.shape)  # [..., 1, K]
    scale = _cost_scale(costs, where, cost_scale)
    c_t, c_hat_t = costs / scale, c_hat / scale
    utility = labels[..., None] - lam * c_t[..., None]  # [..., M, K]
    logits = (scores[..., None] - lam * c_hat_t[..., None]) / temperature
    allowed = jnp.broadcast_to(where[..., None], logits.shape)
    p = masked_softmax(logits, allowed, axis=-2)
    value = jnp.sum(p * jnp.where(allowed, utility, 0.0), axis=-2)  # [..., K]
    oracle = jnp.max(jnp.where(allowed, utility, -jnp.inf), axis=-2)
    any_valid = jnp.any(where, axis=-1)
    regret = jnp.where(any_valid[..., None], (oracle - value) / (1.0 + lam[..., 0, :]), 0.0)
    per_list = jnp.mean(regret, axis=-1)
    list_w = list_weights(weights, scores.shape[:-1], scores.dtype)
    return safe_reduce(per_list, any_valid, list_w, reduce_fn)


#: Prices of :func:`calibrated_wtp_loss` on the normalised cost scale (log-spaced).
CALIBRATED_WTP_LAMBDAS = (0.03, 0.0578, 0.111, 0.214, 0.412, 0.794, 1.53, 3.0)


def mean_max_cost(costs: jax.Array, where: jax.Array) -> jax.Array:
    """Mean over lists of each list's dearest valid cost (no gradient; 1 if none valid).

    A cost scale for the λ rule that one long prompt in the batch cannot dominate.

    >>> print(float(mean_max_cost(jnp.array([[1.0, 3.0], [2.0, 5.0]]), jnp.ones((2, 2), bool))))
    4.0
    """
    costs = jax.lax.stop_gradient(costs)
    per_list = jnp.max(jnp.where(where, costs, -jnp.inf), axis=-1)
    ok = jnp.any(where, axis=-1)
    n = jnp.sum(ok)
    mean = jnp.sum(jnp.where(ok, per_list, 0.0)) / jnp.maximum(n, 1)
    return jnp.where((n > 0) & (mean > 0), mean, 1.0)


def calibrated_wtp_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    lambdas: ArrayLike | None = None,
    temperature: float = 0.05,
    decision_weight: float = 1.0,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Calibrated decision-aware loss: BCE plus the λ rule's expected regret.

    Scores are logits; ``p = sigmoid(s)`` is the router's success probability, the
    quantity the willingness-to-pay rule ``argmax_m p_m − λ ĉ_m`` needs on the quality
    scale. Costs are put on that scale by ``c̃ = c / c̄`` with ``c̄`` the batch's mean
    dearest cost per prompt (:func:`mean_max_cost`, no gradient), so the prices ``λ``
    are dataset-free. For each ``λ`` the rule is relaxed to
    ``π_λ = softmax((p − λ c̃) / T)`` and the loss is

    .. math:: \ell_b = \mathrm{BCE}(s_b, y_b) + w \cdot \operatorname{mean}_\lambda
        \frac{1}{1+\lambda}\Big[\max_m (y_m - \lambda \tilde c_m)
        - \sum_m \pi_{\lambda,m} (y_m - \lambda \tilde c_m)\Big]

    The second term is minus the expected utility ``Σ_m π_λ,m (y_m − λ c̃_m)`` of the
    relaxed rule, shifted by the oracle's utility so it is ``≥ 0`` (the shift has no
    gradient): it spends the model's capacity on the decisions the λ rule makes. The
    BCE term keeps ``p`` calibrated, so the rule's sweep over ``λ`` traces the
    quality–cost hull. ``decision_weight = 0`` is plain BCE.

    Args:
      scores: ``[..., M]`` logits.
      labels: ``[..., M]`` true qualities in ``[0, 1]``.
      costs: ``[..., M]`` true costs (required).
      lambdas: ``[K]`` prices on the normalised scale (default
        ``CALIBRATED_WTP_LAMBDAS``, 0.03 ... 3, log-spaced).
      temperature: softmax temperature ``T`` of the relaxed rule.
      decision_weight: ``w``.
      where: optional ``[..., M]`` bool mask; masked models are never chosen.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` over lists with a valid model, ``jnp.sum``, or None.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None; ``[...]`` per list then).

    >>> s, y, c = jnp.array([0.0, 0.0]), jnp.array([1.0, 1.0]), jnp.array([1.0, 1.0])
    >>> # p = (.5, .5), equal costs: zero regret; BCE = log 2.
    >>> print(round(float(calibrated_wtp_loss(s, y, costs=c)), 4))
    0.6931
    """
    if costs is None:
        raise ValueError("calibrated_wtp_loss needs costs=[..., M] (true costs).")
    scores, labels, costs, where = prepare(scores, labels, costs, where)
    lam = jnp.asarray(CALIBRATED_WTP_LAMBDAS if lambdas is None else lambdas, scores.dtype)
    lam = jnp.broadcast_to(lam, scores.shape[:-1] + (1,) + lam.shape)  # [..., 1, K]
    any_valid = jnp.any(where, axis=-1)
    bce = optax.sigmoid_binary_cross_entropy(scores, labels)
    n_valid = jnp.maximum(jnp.sum(where, axis=-1), 1)
    per_list_bce = jnp.sum(jnp.where(where, bce, 0.0), axis=-1) / n_valid
    ct = costs / mean_max_cost(costs, where)
    p = jax.nn.sigmoid(scores)
    utility = labels[..., None] - lam * ct[..., None]  # [..., M, K]
    logits = (p[..., None] - lam * ct[..., None]) / temperature
    allowed = jnp.broadcast_to(where[..., None], logits.shape)
    pi = masked_softmax(logits, allowed, axis=-2)
    value = jnp.sum(pi * jnp.where(allowed, utility, 0.0), axis=-2)  # [..., K]
    oracle = jax.lax.stop_gradient(jnp.max(jnp.where(allowed, utility, -jnp.inf), axis=-2))
    regret = jnp.where(any_valid[..., None], (oracle - value) / (1.0 + lam[..., 0, :]), 0.0)
    per_list = per_list_bce + decision_weight * jnp.mean(regret, axis=-1)
    list_w = list_weights(weights, scores.shape[:-1], scores.dtype)
    return safe_reduce(per_list, any_valid, list_w, reduce_fn)
