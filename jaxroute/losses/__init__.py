"""Differentiable ranking losses for LLM routing (METHOD.md §5).

Every loss takes ``[..., M]`` arrays (last axis = candidate models, leading axes = batch)
and one signature, ``loss(scores, labels, *, costs=None, where=None, weights=None,
reduce_fn=jnp.mean, ...)``; it is jit- and vmap-safe, masked entries (``where`` False)
are excluded, and a fully masked (or, for ranking losses, all-tied) list gives 0 with
finite gradients. ``LOSSES`` maps a name to each variant with its default
hyper-parameters, all called as ``loss(scores, labels, costs=..., where=...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from jaxroute.losses._decision import (
    CALIBRATED_WTP_LAMBDAS,
    DEFAULT_LAMBDAS,
    budget_regret_loss,
    calibrated_wtp_loss,
    log_spaced_budgets,
    sample_log_uniform_budgets,
    wtp_regret_loss,
)
from jaxroute.losses._equirouter import equirouter_loss
from jaxroute.losses._listwise import listmle_loss, softmax_loss
from jaxroute.losses._ot import ot_ranks_loss
from jaxroute.losses._pairwise import pairwise_hinge_loss, pairwise_logistic_loss
from jaxroute.losses._pointwise import mse_loss, sigmoid_bce_loss
from jaxroute.losses._sorting import neuralsort, neuralsort_loss, softsort, softsort_loss

__all__ = [
    "CALIBRATED_WTP_LAMBDAS",
    "DEFAULT_LAMBDAS",
    "LOSSES",
    "budget_regret_loss",
    "calibrated_wtp_loss",
    "equirouter_loss",
    "listmle_loss",
    "log_spaced_budgets",
    "mse_loss",
    "neuralsort",
    "neuralsort_loss",
    "ot_ranks_loss",
    "pairwise_hinge_loss",
    "pairwise_logistic_loss",
    "sample_log_uniform_budgets",
    "sigmoid_bce_loss",
    "softmax_loss",
    "softsort",
    "softsort_loss",
    "wtp_regret_loss",
]


def _without_costs(loss: Callable[..., jax.Array], **defaults) -> Callable[..., jax.Array]:
    """The loss with costs dropped (the variant that does not use them)."""

    @functools.wraps(loss)
    def wrapped(scores, labels, *, costs=None, where=None, **kwargs):
        del costs
        return loss(scores, labels, where=where, **{**defaults, **kwargs})

    return wrapped


def _with_costs(loss: Callable[..., jax.Array], **defaults) -> Callable[..., jax.Array]:
    """The loss with costs passed through (tie-breaking or decision-aware variants)."""

    @functools.wraps(loss)
    def wrapped(scores, labels, *, costs=None, where=None, **kwargs):
        return loss(scores, labels, costs=costs, where=where, **{**defaults, **kwargs})

    return wrapped


#: name -> ``loss(scores, labels, *, costs=None, where=None, **overrides)``.
#: ``*_tb`` variants break label ties by lower cost and need ``costs``.
LOSSES: dict[str, Callable[..., jax.Array]] = {
    "mse": _without_costs(mse_loss),
    "bce": _without_costs(sigmoid_bce_loss),
    "pairwise_logistic": _without_costs(pairwise_logistic_loss),
    "pairwise_logistic_tb": _with_costs(pairwise_logistic_loss, tie_break="cost"),
    "pairwise_hinge": _without_costs(pairwise_hinge_loss, margin=1.0),
    "pairwise_hinge_tb": _with_costs(pairwise_hinge_loss, margin=1.0, tie_break="cost"),
    "softmax": _without_costs(softmax_loss),
    "listmle": _without_costs(listmle_loss),
    "listmle_tb": _with_costs(listmle_loss),
    "neuralsort": _without_costs(neuralsort_loss, tau=1.0),
    "neuralsort_tb": _with_costs(neuralsort_loss, tau=1.0),
    "softsort": _without_costs(softsort_loss, tau=0.1),
    "softsort_tb": _with_costs(softsort_loss, tau=0.1),
    "ot_ranks": _without_costs(ot_ranks_loss, epsilon=0.05),
    "ot_ranks_tb": _with_costs(ot_ranks_loss, epsilon=0.05),
    "budget_regret": _with_costs(budget_regret_loss, temperature=0.1, cost_weight=0.05),
    "wtp_regret": _with_costs(wtp_regret_loss, temperature=0.1),
    # BCE on logits + the λ rule's expected regret on sigmoid(scores) (issue 17).
    "bce_wtp": _with_costs(calibrated_wtp_loss, temperature=0.05, decision_weight=1.0),
    "equirouter": _without_costs(equirouter_loss, rank_weight=50.0),
    "equirouter_tb": _with_costs(equirouter_loss, rank_weight=50.0, tie_break="cost"),
}
