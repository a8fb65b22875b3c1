"""The decision rules as a table (docs/method.md §1): name -> :class:`Rule`.

A rule turns a router's scores ``s`` and predicted costs ``ĉ`` into one model per
prompt, given one parameter. Everything that differs between rules is a field of its
entry: the choice function, the exact sweep, the parameter grid of an evaluation, the
pieces of a calibration and the labels of the report. Everything else (evaluation,
calibration, the report, serving) loops over :data:`RULES` or looks a rule up with
:func:`get_rule`, so a third rule is one more entry here.

The first entry is the primary rule: its fields sit at the top level of a router's
report entry (``routers[name]``); every other rule's sit under ``routers[name][key]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from jax.typing import ArrayLike

from jaxroute.routing.choice import budget_choice, lambda_choice
from jaxroute.routing.grids import lambda_grid, resolve_budgets, thin_curve
from jaxroute.routing.pieces import budget_pieces, lambda_pieces
from jaxroute.routing.sweep import SweepResult, budget_sweep, lambda_sweep


@dataclasses.dataclass(frozen=True)
class Rule:
    """One decision rule.

    Attributes:
      name: the rule's name (``--rule``, ``policy.rule``, calibration files).
      title: its name in the report's headings and figures.
      short: its one-letter column tag in the headline table.
      key: where its fields sit in a router's report entry (``None``: the top level,
        the primary rule) and the key of its parameter in a stored curve.
      param: the parameter's key in a stored curve (``curve[param]``).
      spend_ascending: spending grows with the parameter (budget) or falls (λ); the
        "largest budget" point is the parameter of most spending.
      rank_label: x label of the model-shares figure (points ordered by spending).
      choice: ``(scores, pred_costs, parameter) -> [..., N]`` int32 choices.
      sweep: ``(scores, pred_costs, quality, cost, params, **kw) -> SweepResult``.
      pieces: ``(scores, pred_costs) -> [P]`` one float32 parameter inside every piece
        where the choices are constant (calibration).
      curves: ``(scores [R,N,M], pred_costs, quality, cost, *, budgets, method,
        n_points) -> [R] SweepResult``: the operating points an evaluation stores.
      infeasible: ``(pred_costs [N, M], parameter) -> [N] bool``: prompts for which no
        model satisfies the parameter (the rule then falls back, e.g. to the cheapest).
      describe: one sentence for report.md.
      flag: the policy field that sets the parameter directly (``--budget``, ``--wtp``,
        a request's ``"budget"`` / ``"wtp"``).
      flag_label: the field's name in messages.
      valid: whether a value of the field is allowed; requirement: what ``valid`` asks,
        in words.
    """

    name: str
    title: str
    short: str
    key: str | None
    param: str
    spend_ascending: bool
    rank_label: str
    choice: Callable[..., Any]
    sweep: Callable[..., SweepResult]
    pieces: Callable[[ArrayLike, ArrayLike], np.ndarray]
    curves: Callable[..., list[SweepResult]]
    infeasible: Callable[[np.ndarray, float], np.ndarray]
    describe: str
    flag: str
    flag_label: str
    valid: Callable[[float], bool]
    requirement: str

    def entry(self, router_entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """This rule's fields in a router's report entry (``None``: not evaluated)."""
        return router_entry if self.key is None else router_entry.get(self.key)

    def top(self, params: ArrayLike) -> int:
        """Index of the parameter of most spending (largest budget, λ = 0)."""
        p = np.asarray(params)
        return int(np.argmax(p) if self.spend_ascending else np.argmin(p))

    def choose(self, scores: ArrayLike, pred_costs: ArrayLike, parameter: float) -> np.ndarray:
        """``[N]`` choices at ``parameter`` (the float32 rule the sweeps reproduce)."""
        return np.asarray(self.choice(scores, pred_costs, np.float32(parameter)))


def _budget_curves(s, pc, q, c, *, budgets, method, n_points) -> list[SweepResult]:
    """Each router's own grid from ``budgets`` (ORBIT's differ per router), padded with
    its last budget to a common length for one ``[R, N, M]`` sweep and cut back after."""
    del n_points  # every budget of the grid is kept
    grids = [resolve_budgets(budgets, pc[r], c) for r in range(s.shape[0])]
    width = max(g.size for g in grids)
    padded = np.stack([np.concatenate([g, np.repeat(g[-1:], width - g.size)]) for g in grids])
    swept = budget_sweep(s, pc, q, c, padded, method=method)
    return [SweepResult(*(a[r, : g.size] for a in swept)) for r, g in enumerate(grids)]


def _lambda_curves(s, pc, q, c, *, budgets, method, n_points) -> list[SweepResult]:
    """Every breakpoint (exact), stored thinned to the staircase plus ``n_points[r]``."""
    del budgets, method  # the grid is every breakpoint; the events sweep is exact
    out = []
    for r in range(s.shape[0]):
        res = lambda_sweep(s[r], pc[r], q, c, lambda_grid(s[r], pc[r]))
        keep = thin_curve(res.cost, res.quality, n_points[r])
        out.append(SweepResult(*(a[keep] for a in res)))
    return out


def _no_model_fits(pred_costs, budget) -> np.ndarray:
    return ~(np.asarray(pred_costs) <= np.float32(budget)).any(axis=-1)


def _always_feasible(pred_costs, lam) -> np.ndarray:
    return np.zeros(np.shape(pred_costs)[:-1], bool)


RULES: dict[str, Rule] = {
    "budget": Rule(
        name="budget",
        title="budget rule",
        short="B",
        key=None,
        param="budget",
        spend_ascending=True,
        rank_label="budget rank (B ascending)",
        choice=budget_choice,
        sweep=budget_sweep,
        pieces=budget_pieces,
        curves=_budget_curves,
        infeasible=_no_model_fits,
        describe="B = budget rule (per-prompt cap on the predicted cost, swept over the "
        "budget grid)",
        flag="budget",
        flag_label="budget",
        valid=lambda v: v > 0,
        requirement="> 0 USD per prompt",
    ),
    "lambda": Rule(
        name="lambda",
        title="λ rule",
        short="λ",
        key="lambda",
        param="lambda",
        spend_ascending=False,
        rank_label="λ rank (λ descending)",
        choice=lambda_choice,
        sweep=lambda_sweep,
        pieces=lambda_pieces,
        curves=_lambda_curves,
        infeasible=_always_feasible,
        describe="λ = willingness-to-pay rule (argmax of s − λ·ĉ, swept over every breakpoint)",
        flag="wtp",
        flag_label="wtp (λ)",
        valid=lambda v: v >= 0,
        requirement=">= 0",
    ),
}
PRIMARY = next(iter(RULES))


def get_rule(name: str) -> Rule:
    """The rule called ``name``; a ValueError naming the known rules otherwise."""
    if name not in RULES:
        raise ValueError(f"rule must be one of {tuple(RULES)}, got {name!r}")
    return RULES[name]


def choose(rule: str, scores: ArrayLike, pred_costs: ArrayLike, parameter: float) -> np.ndarray:
    """``[N]`` choices of rule ``rule`` at ``parameter`` (serving, calibration)."""
    return get_rule(rule).choose(scores, pred_costs, parameter)


def rule_of_flag(field: str) -> Rule | None:
    """The rule whose parameter the policy field ``field`` sets (None: not such a field,
    e.g. a calibration target)."""
    return next((r for r in RULES.values() if r.flag == field), None)


def check_flag(field: str, value: float) -> None:
    """One line when ``value`` is not allowed for the rule parameter field ``field``."""
    rule = rule_of_flag(field)
    if rule is not None and not rule.valid(value):
        raise ValueError(f"{rule.flag_label} must be {rule.requirement}, got {value!r}")


def evaluated(entries: Sequence[Mapping[str, Any]]) -> list[Rule]:
    """The rules with fields in any of these report entries (the primary always)."""
    return [r for r in RULES.values() if r.key is None or any(r.entry(e) for e in entries)]
