"""Differentiable ranking losses for LLM routing (docs/method.md §5).

Every loss takes ``[..., M]`` arrays (last axis = candidate models, leading axes = batch)
and one signature, ``loss(scores, labels, *, costs=None, where=None, weights=None,
reduce_fn=jnp.mean, ...)``; it is jit- and vmap-safe, masked entries (``where`` False)
are excluded, and a fully masked (or, for ranking losses, all-tied) list gives 0 with
finite gradients. ``LOSSES`` maps a name to a :class:`LossSpec` (the function, its
family, whether it uses costs), each called as ``loss(scores, labels, costs=...,
where=...)``. A new loss is a function in one of the family modules plus one line there.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

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

_TB = {"tie_break": "cost"}

__all__ = [
    "CALIBRATED_WTP_LAMBDAS",
    "DEFAULT_LAMBDAS",
    "KINDS",
    "LOSSES",
    "LossSpec",
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


KINDS = ("pointwise", "pairwise", "listwise", "sorting", "decision")


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity (jit caches on it)
class LossSpec:
    """One entry of ``LOSSES``: a loss function and what the experiment needs to know.

    Calling the entry calls ``fn(scores, labels, where=..., **fixed, **kwargs)``, passing
    ``costs`` only when ``uses_costs``. Hyper-parameter defaults are the function's own
    (stated once, in its signature; :attr:`defaults` reads them).

    Attributes:
      fn: the loss, ``fn(scores, labels, *, costs=None, where=None, weights=None,
        reduce_fn=jnp.mean, **hyper_parameters)``.
      kind: its family: ``"pointwise"``, ``"pairwise"``, ``"listwise"``, ``"sorting"``
        or ``"decision"``; ``"pointwise+pairwise"`` for a sum of two (EquiRouter's).
      uses_costs: the entry passes ``costs`` on (tie-break and decision-aware losses).
      fixed: keyword arguments this entry fixes (``tie_break="cost"``).
      tie_break_of: for a ``*_tb`` entry, the entry it adds the cost tie-break to.
    """

    fn: Callable[..., jax.Array]
    kind: str
    uses_costs: bool = False
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tie_break_of: str | None = None

    def __post_init__(self):
        if not set(self.kind.split("+")) <= set(KINDS):
            raise ValueError(f"LossSpec.kind {self.kind!r}: each part one of {KINDS}")

    def __call__(self, scores, labels, *, costs=None, where=None, **kwargs) -> jax.Array:
        if self.uses_costs:
            kwargs["costs"] = costs
        return self.fn(scores, labels, where=where, **{**self.fixed, **kwargs})

    @property
    def defaults(self) -> dict[str, Any]:
        """The hyper-parameters of the loss and their defaults (as the entry calls it)."""
        skip = {"costs", "where", "weights", "reduce_fn", *self.fixed}
        params = list(inspect.signature(self.fn).parameters.values())[2:]
        return {
            p.name: p.default
            for p in params
            if p.name not in skip and p.default is not inspect.Parameter.empty
        }


#: name -> :class:`LossSpec`, each called as ``loss(scores, labels, *, costs=None,
#: where=None, **overrides)``. ``*_tb`` entries break label ties by lower cost.
LOSSES: dict[str, LossSpec] = {
    "mse": LossSpec(mse_loss, "pointwise"),
    "bce": LossSpec(sigmoid_bce_loss, "pointwise"),
    "pairwise_logistic": LossSpec(pairwise_logistic_loss, "pairwise"),
    "pairwise_logistic_tb": LossSpec(
        pairwise_logistic_loss, "pairwise", True, _TB, "pairwise_logistic"
    ),
    "pairwise_hinge": LossSpec(pairwise_hinge_loss, "pairwise"),
    "pairwise_hinge_tb": LossSpec(pairwise_hinge_loss, "pairwise", True, _TB, "pairwise_hinge"),
    "softmax": LossSpec(softmax_loss, "listwise"),
    "listmle": LossSpec(listmle_loss, "listwise"),
    "listmle_tb": LossSpec(listmle_loss, "listwise", True, tie_break_of="listmle"),
    "neuralsort": LossSpec(neuralsort_loss, "sorting"),
    "neuralsort_tb": LossSpec(neuralsort_loss, "sorting", True, tie_break_of="neuralsort"),
    "softsort": LossSpec(softsort_loss, "sorting"),
    "softsort_tb": LossSpec(softsort_loss, "sorting", True, tie_break_of="softsort"),
    "ot_ranks": LossSpec(ot_ranks_loss, "sorting"),
    "ot_ranks_tb": LossSpec(ot_ranks_loss, "sorting", True, tie_break_of="ot_ranks"),
    "budget_regret": LossSpec(budget_regret_loss, "decision", True),
    "wtp_regret": LossSpec(wtp_regret_loss, "decision", True),
    # BCE on logits + the λ rule's expected regret on sigmoid(scores) (issue 17).
    "bce_wtp": LossSpec(calibrated_wtp_loss, "pointwise+decision", True),
    "equirouter": LossSpec(equirouter_loss, "pointwise+pairwise"),
    "equirouter_tb": LossSpec(
        equirouter_loss, "pointwise+pairwise", True, _TB, tie_break_of="equirouter"
    ),
}
