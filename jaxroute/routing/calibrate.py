"""Calibrating a decision rule to a target: mean cost, share of one model, or quality.

Users ask for "at most 0.5 cents per prompt on average", "at most 20% of prompts to the
strong model" or "this quality at the lowest cost", not for a budget ``B`` or a λ. On a
calibration split (a held-back part of the training split, never the test split) the
realised mean cost, share and quality of either rule are piecewise constant in its
parameter:

- budget rule ``argmax_{m: ĉ ≤ B} s``: the choice of prompt ``i`` can only change where
  ``B`` reaches one of its predicted costs ``ĉ[i, m]``; the pieces are
  ``[u_k, u_{k+1})`` over the sorted distinct predicted costs ``u`` (plus ``B < u_0``).
- λ rule ``argmax_m s − λ·ĉ``: the choice of prompt ``i`` follows the upper envelope of
  its ``M`` lines in λ and changes at most ``M − 1`` times, at the envelope's
  breakpoints (λ ≥ 0, :func:`~jaxroute.routing.lambda_grid`).

:func:`rule_pieces` returns one parameter inside every piece (the midpoint, geometric
for budgets, so the float32 rule at route time sees the same choices as the sweep),
:func:`calibration_curve` evaluates the rule exactly at all of them with
the exact sweeps (:func:`~jaxroute.routing.budget_sweep` /
:func:`~jaxroute.routing.lambda_sweep`, exact integer sums), and :func:`select` picks
the piece that meets the target:

- ``cost``: the largest calibration mean cost ``≤`` target (ties: higher quality);
- ``share``: the largest share of the named model ``≤`` target (ties: higher quality,
  then lower cost);
- ``quality``: the lowest calibration mean cost whose quality ``≥`` target (ties: higher
  quality).

Every value the function takes on the calibration split is one of the curve's points,
so the choice is the exact optimum over all parameters, not a grid's approximation.
:func:`realised` then applies the chosen parameter to another split (the test split)
and gives the mean with a seeded, vectorised bootstrap 95% interval.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from jax.typing import ArrayLike

from jaxroute.routing.pieces import MERGE_RTOL, lambda_breakpoints  # noqa: F401 (re-exported)
from jaxroute.routing.rules import RULES as TABLE
from jaxroute.routing.rules import get_rule
from jaxroute.routing.sweep import SweepResult

RULES = tuple(TABLE)  # the rule names (the table: jaxroute.routing.rules.RULES)


class CalibrationError(ValueError):
    """A target no parameter of the rule reaches on the calibration split."""


# --------------------------------------------------------------------------- pieces


def rule_pieces(scores: ArrayLike, pred_costs: ArrayLike, rule: str) -> np.ndarray:
    """One float32 parameter inside each piece where the rule's choices are constant.

    Args:
      scores: ``[N, M]`` router scores.
      pred_costs: ``[N, M]`` predicted costs.
      rule: a name of :data:`~jaxroute.routing.rules.RULES`.

    Returns:
      ``[P]`` ascending float32 parameters; every choice vector the rule can produce on
      these prompts (for any parameter ≥ 0 for λ, any real budget) is produced by one
      of them, up to float32 ties at a breakpoint itself.
    """
    return get_rule(rule).pieces(scores, pred_costs)


def calibration_curve(
    scores: ArrayLike, pred_costs: ArrayLike, quality: ArrayLike, cost: ArrayLike, rule: str
) -> SweepResult:
    """The rule's exact operating points at every piece of :func:`rule_pieces`."""
    spec = get_rule(rule)
    return spec.sweep(scores, pred_costs, quality, cost, spec.pieces(scores, pred_costs))


# --------------------------------------------------------------------------- targets


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """One kind of target: its curve value, its per-prompt value and its selection.

    Attributes:
      curve: ``(curve, model) -> [P]`` the calibration value at each piece.
      per_prompt: ``(choice [N], quality, cost, model) -> [N]`` values whose mean is it.
      at_most: the target is an upper bound (cost, share) rather than a lower one.
      unit: for messages.
    """

    curve: Callable[[SweepResult, int], np.ndarray]
    per_prompt: Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]
    at_most: bool
    unit: str


def _picked(values, choice):
    return np.take_along_axis(np.asarray(values, np.float64), choice[:, None], 1)[:, 0]


TARGETS: dict[str, TargetSpec] = {
    "cost": TargetSpec(
        curve=lambda r, m: r.cost,
        per_prompt=lambda ch, q, c, m: _picked(c, ch),
        at_most=True,
        unit="USD mean cost per prompt",
    ),
    "share": TargetSpec(
        curve=lambda r, m: r.shares[:, m],
        per_prompt=lambda ch, q, c, m: (ch == m).astype(np.float64),
        at_most=True,
        unit="share of prompts",
    ),
    "quality": TargetSpec(
        curve=lambda r, m: r.quality,
        per_prompt=lambda ch, q, c, m: _picked(q, ch),
        at_most=False,
        unit="mean quality",
    ),
}


def select(curve: SweepResult, kind: str, target: float, model: int = 0) -> int:
    """Index of the curve point that meets ``target`` (rules in the module docstring).

    Raises:
      CalibrationError: no point meets the target (names the reachable range).
    """
    if kind not in TARGETS:
        raise ValueError(f"target kind must be one of {sorted(TARGETS)}, got {kind!r}")
    spec = TARGETS[kind]
    value = np.asarray(spec.curve(curve, model), np.float64)
    target = float(target)
    if not np.isfinite(target):
        raise ValueError(f"target_{kind} must be finite, got {target}")
    eps = 1e-12 * max(1.0, abs(target))  # float64 means of exact sums; 0.2 == 16/80
    ok = value <= target + eps if spec.at_most else value >= target - eps
    if not ok.any():
        bound = "lowest" if spec.at_most else "highest"
        reach = value.min() if spec.at_most else value.max()
        raise CalibrationError(
            f"target_{kind}={target:g} cannot be met on the calibration split: the "
            f"{bound} {spec.unit} any parameter reaches is {reach:.6g}"
        )
    idx = np.flatnonzero(ok)
    q, c = curve.quality[idx], curve.cost[idx]
    if kind == "quality":  # cheapest, then higher quality, then lowest parameter
        order = np.lexsort((-q, c))
    else:  # closest below the target, then higher quality, then lower cost
        order = np.lexsort((c, -q, -value[idx]))
    return int(idx[order[0]])


def choose(scores: ArrayLike, pred_costs: ArrayLike, rule: str, parameter: float) -> np.ndarray:
    """``[N]`` choices of ``rule`` at ``parameter`` (the same float32 rule as the sweeps)."""
    return get_rule(rule).choose(scores, pred_costs, parameter)


def bootstrap_mean_ci(
    values: ArrayLike,
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    chunk_elems: int = 1 << 22,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, resamples vectorised.

    Resamples are drawn ``[chunk, N]`` at a time (``chunk·N ≤ chunk_elems``) from one
    seeded generator, so the interval is reproducible and memory stays bounded.

    >>> lo, hi = bootstrap_mean_ci(np.r_[np.zeros(50), np.ones(50)], seed=0)
    >>> 0.38 < lo < 0.5 < hi < 0.62
    True
    """
    v = np.asarray(values, np.float64).ravel()
    n = v.size
    if n == 0:
        raise ValueError("bootstrap of an empty sample")
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_resamples, chunk_elems // n))
    means = []
    for start in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(k, n), dtype=np.int64)
        means.append(v[idx].mean(axis=1))
    means = np.concatenate(means)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


@dataclasses.dataclass
class Calibration:
    """A chosen parameter and what it gives on the calibration split."""

    rule: str
    kind: str
    target: float
    model: int
    parameter: float
    calibration_value: float
    calibration_quality: float
    calibration_cost: float
    n_pieces: int


def calibrate(
    scores: ArrayLike,
    pred_costs: ArrayLike,
    quality: ArrayLike,
    cost: ArrayLike,
    *,
    rule: str,
    kind: str,
    target: float,
    model: int = 0,
) -> tuple[Calibration, SweepResult]:
    """Chooses ``rule``'s parameter on a calibration split; returns it and the curve."""
    curve = calibration_curve(scores, pred_costs, quality, cost, rule)
    return from_curve(curve, rule=rule, kind=kind, target=target, model=model), curve


def from_curve(curve: SweepResult, *, rule: str, kind: str, target: float, model: int = 0):
    """:class:`Calibration` for ``target`` from a stored calibration curve."""
    i = select(curve, kind, target, model)
    return Calibration(
        rule=rule,
        kind=kind,
        target=float(target),
        model=int(model),
        parameter=float(curve.budget[i]),
        calibration_value=float(TARGETS[kind].curve(curve, model)[i]),
        calibration_quality=float(curve.quality[i]),
        calibration_cost=float(curve.cost[i]),
        n_pieces=int(curve.budget.shape[0]),
    )


def realised(
    scores: ArrayLike,
    pred_costs: ArrayLike,
    quality: ArrayLike,
    cost: ArrayLike,
    cal: Calibration,
    *,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict:
    """The target's realised value on another split, with a bootstrap 95% interval."""
    choice = choose(scores, pred_costs, cal.rule, cal.parameter)
    v = TARGETS[cal.kind].per_prompt(choice, quality, cost, cal.model)
    lo, hi = bootstrap_mean_ci(v, n_resamples=n_resamples, seed=seed)
    value = float(v.mean())
    return {
        "realised": value,
        "ci_low": lo,
        "ci_high": hi,
        "drift": value - cal.target,
        "n": int(v.size),
        "quality": float(_picked(quality, choice).mean()),
        "cost": float(_picked(cost, choice).mean()),
    }


__all__ = [
    "RULES",
    "TARGETS",
    "Calibration",
    "CalibrationError",
    "TargetSpec",
    "bootstrap_mean_ci",
    "calibrate",
    "calibration_curve",
    "choose",
    "from_curve",
    "lambda_breakpoints",
    "realised",
    "rule_pieces",
    "select",
]


#: A calibration warns when the realised value's 95% interval is wider than this share of
#: the target (or of the realised value when the target is 0).
WIDE_INTERVAL_SHARE = 0.25
#: A calibration on fewer prompts than this warns that its parameter is noisy.
MIN_CALIBRATION_PROMPTS = 100


def _steps_over(curve, value, *, kind: str, target: float, model: int) -> list[str]:
    """The warning when the chosen value misses ``target`` by more than the wide share."""
    got = float(value[select(curve, kind, target, model)])
    if abs(got - target) <= WIDE_INTERVAL_SHARE * abs(target):
        return []
    at_most = TARGETS[kind].at_most
    beyond = value[value > got] if at_most else value[value < got]
    step = f"; no parameter gives {'more' if at_most else 'less'}"
    if beyond.size:
        nxt = float(beyond.min() if at_most else beyond.max())
        step = f"; the next value any parameter gives is {nxt:.6g}"
    return [
        f"the router cannot get near the target {target:.6g}: the nearest {kind} on the "
        f"calibration split is {got:.6g}{step}"
    ]


def calibration_warnings(
    curve: SweepResult, *, kind: str, target: float, model: int, n_calibration: int, ci
) -> list[str]:
    """One line per reason not to trust a calibration (empty: none).

    - the router cannot move: every parameter of the curve gives the same value of the
      target quantity (e.g. a share of 0 at every λ), so any target reads the same;
    - the curve steps over the target: the chosen parameter's value on the calibration
      split is further from the target than :data:`WIDE_INTERVAL_SHARE` of it (e.g. every
      prompt alike, so the share jumps from 0 to 1 at one parameter and a target of 0.2
      gets 0);
    - the 95% interval ``ci = (low, high)`` on test is wider than
      :data:`WIDE_INTERVAL_SHARE` of the target;
    - fewer than :data:`MIN_CALIBRATION_PROMPTS` calibration prompts.
    """
    out = []
    value = np.asarray(TARGETS[kind].curve(curve, model), np.float64)
    if value.size == 0 or np.ptp(value) <= 1e-12 * max(1.0, float(np.abs(value).max())):
        v = float(value[0]) if value.size else float("nan")
        out.append(
            f"the router cannot move: every parameter gives {kind} {v:.6g} on the "
            "calibration split, so every target reads the same"
        )
    elif abs(float(target)) > 0:
        out += _steps_over(curve, value, kind=kind, target=float(target), model=model)
    low, high = (float(x) for x in ci)
    scale = abs(float(target)) or max(abs(low), abs(high))
    if scale > 0 and high - low > WIDE_INTERVAL_SHARE * scale:
        out.append(
            f"the 95% interval on test [{low:.6g}, {high:.6g}] is wider than "
            f"{WIDE_INTERVAL_SHARE:.0%} of the target {float(target):.6g}"
        )
    if n_calibration < MIN_CALIBRATION_PROMPTS:
        out.append(
            f"only {n_calibration} calibration prompts (< {MIN_CALIBRATION_PROMPTS}): the "
            "chosen parameter is noisy; hold back more (train.val_fraction)"
        )
    return out
