"""Soft ranks by optimal transport (ott-jax), with a Spearman-style loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxroute.losses._utils import ReduceFn, informative, list_weights, prepare, safe_reduce


def _import_soft_sort():
    try:
        from ott.tools import soft_sort
    except ImportError as err:  # pragma: no cover - exercised only without ott-jax
        raise ImportError(
            "ot_ranks_loss needs ott-jax (pip install 'jaxroute[ot]', i.e. ott-jax==0.6.0 "
            "with jaxopt, lineax, equinox, jaxtyping, wadler-lindig)."
        ) from err
    return soft_sort


def _squash(z: jax.Array) -> jax.Array:
    """Sigmoid of centred scores: shift-invariant, finite gradients at ties."""
    return jax.nn.sigmoid(z - jnp.mean(z))


def _soft_ranks(soft_sort, x: jax.Array, epsilon: float, max_iterations: int) -> jax.Array:
    """``ott.tools.soft_sort.ranks`` along the last axis (ascending, 0-based).

    ott broadcasts implicit ranks inside, which fails under
    ``jax_numpy_rank_promotion='raise'``; a custom VJP lets both its forward and its
    backward pass be traced with rank promotion allowed, and nowhere else.
    """

    def ranks(x):
        return soft_sort.ranks(
            x,
            axis=-1,
            squashing_fun=_squash,
            implicit_diff=None,
            max_iterations=max_iterations,
            epsilon=epsilon,
        )

    @jax.custom_vjp
    def f(x):
        with jax.numpy_rank_promotion("allow"):
            return ranks(x)

    def f_fwd(x):
        with jax.numpy_rank_promotion("allow"):
            return jax.vjp(ranks, x)

    def f_bwd(vjp_fn, g):
        with jax.numpy_rank_promotion("allow"):
            return vjp_fn(g)

    f.defvjp(f_fwd, f_bwd)
    return f(x)


def label_ranks(labels: jax.Array, where: jax.Array, costs: jax.Array | None = None) -> jax.Array:
    """Ascending 0-based ranks of the labels (best model = highest rank).

    Ties get their average rank; with ``costs``, label ties are broken by lower cost
    (the cheaper model ranks higher). Masked models take the lowest ranks, so valid ranks
    are offset by the number of masked models, as the soft ranks of filled scores are.
    """
    yi, yj = labels[..., :, None], labels[..., None, :]
    below = yj < yi
    tied = yj == yi
    if costs is not None:
        ci, cj = costs[..., :, None], costs[..., None, :]
        below = below | (tied & (cj > ci))
        tied = tied & (cj == ci)
    valid_j = where[..., None, :]
    n_below = jnp.sum(below & valid_j, axis=-1)
    n_tied = jnp.sum(tied & valid_j, axis=-1)
    n_masked = jnp.sum(~where, axis=-1, keepdims=True)
    ranks = n_below + (n_tied - 1) / 2.0 + n_masked
    return ranks.astype(labels.dtype)


def ot_ranks_loss(
    scores: ArrayLike,
    labels: ArrayLike,
    *,
    costs: ArrayLike | None = None,
    epsilon: float = 0.05,
    max_iterations: int = 200,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: ReduceFn | None = jnp.mean,
) -> jax.Array:
    r"""Spearman-style loss on optimal-transport soft ranks (``ott.tools.soft_sort.ranks``).

    .. math:: \ell_b = \frac1n \sum_{m\ \text{valid}}
        \Big(\frac{\tilde r(s_b)_m - r(y_b)_m}{n}\Big)^2

    ``r̃`` are the entropic-OT soft ranks of the scores, ``r`` the (average-tie) ranks of
    the labels, ties broken by lower cost when ``costs`` are given; ``n`` is the number of
    valid models. Masked models are given a score below every valid one, so they take the
    lowest ranks on both sides (the soft ranks of valid models can leak a little towards
    them). Lists with no two valid models that differ give 0 and are left out of the mean.
    ott-jax is imported lazily, so the rest of the package works without it.

    Args:
      scores: ``[..., M]`` predicted scores.
      labels: ``[..., M]`` true qualities.
      costs: optional ``[..., M]`` costs used to break label ties.
      epsilon: entropic regularisation of the transport between ``sigmoid(s - mean(s))``
        (scores are taken on the quality scale, not standardised) and ``M`` evenly spaced
        targets in [0, 1] (default 0.05).
      max_iterations: Sinkhorn iterations (unrolled for the gradient).
      where: optional ``[..., M]`` bool mask.
      weights: optional per-prompt weights, broadcastable to ``[...]``.
      reduce_fn: ``jnp.mean`` over informative lists, ``jnp.sum``, or None for ``[...]``.

    Returns:
      The loss (a scalar unless ``reduce_fn`` is None).

    Raises:
      ImportError: when ott-jax is not installed.

    >>> s, y = jnp.array([0.0, 1.0, 2.0]), jnp.array([0.0, 0.5, 1.0])
    >>> print(float(ot_ranks_loss(s, y)) < 0.01)  # doctest: +SKIP
    True
    """
    soft_sort = _import_soft_sort()
    scores, labels, costs, where = prepare(scores, labels, costs, where)
    big = jnp.where(where, scores, jnp.inf)
    low = jax.lax.stop_gradient(jnp.min(big, axis=-1, keepdims=True))
    low = jnp.where(jnp.isfinite(low), low, 0.0) - 1.0
    filled = jnp.where(where, scores, low)
    # ott's default squashing divides by std(z) + 1e-10, whose gradient is NaN (or huge)
    # when scores tie; its implicit differentiation hits a singular linear system when
    # the transport is nearly hard. Centred sigmoid and unrolled Sinkhorn avoid both.
    soft = _soft_ranks(soft_sort, filled, epsilon, max_iterations)
    hard = label_ranks(labels, where, costs)
    n = jnp.sum(where, axis=-1).astype(scores.dtype)
    nn = jnp.maximum(n, 1.0)[..., None]
    sq = jnp.where(where, jnp.square((soft - hard) / nn), 0.0)
    per_list = jnp.sum(sq, axis=-1) / jnp.maximum(n, 1.0)
    ok = informative(labels, where, costs)
    list_w = list_weights(weights, scores.shape[:-1], scores.dtype)
    return safe_reduce(per_list, ok, list_w, reduce_fn)
