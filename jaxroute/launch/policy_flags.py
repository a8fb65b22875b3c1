"""The policy flags of ``route``, ``serve`` and ``calibrate``, defined once.

A policy is one of ``--budget`` (budget rule, USD per prompt), ``--wtp`` (λ rule) or a
calibrated target (``--target_cost`` / ``--target_share`` / ``--target_quality``, with
``--rule`` and, for a share, ``--model``); ``--router`` and ``--seed_index`` pick the
trained router. An app calls the ``define_*`` functions at import (absl flags are
global; a second call returns the same flags) and reads them in ``main``::

    _POLICY = policy_flags.define_policy_flags()
    _ROUTER = policy_flags.define_router_flags()
    ...
    spec = _POLICY.spec()  # every policy field, None where not given
"""

from __future__ import annotations

import dataclasses

from absl import flags

from jaxroute.routing.rules import RULES as RULE_TABLE

#: The decision rules (``--rule``), from the rule table; the first is the default.
RULES = tuple(RULE_TABLE)
#: The ways to state a policy, in the order errors list them: each rule's own flag
#: (``--budget``, ``--wtp``), then the calibrated targets.
TARGETS = ("target_cost", "target_share", "target_quality")
RULE_FLAGS = tuple(r.flag for r in RULE_TABLE.values())
POLICY_FIELDS = (*RULE_FLAGS, *TARGETS)

_HELP = {
    "budget": "Budget rule: the most predicted USD per prompt (> 0).",
    "wtp": "Willingness-to-pay rule: λ in score - λ·predicted cost (>= 0).",
    **{
        r.flag: f"The {r.title}'s parameter ({r.requirement})."
        for r in RULE_TABLE.values()
        if r.flag not in ("budget", "wtp")
    },
    "target_cost": "Calibrated target: mean USD per prompt.",
    "target_share": "Calibrated target: share of prompts sent to --model (at most).",
    "target_quality": "Calibrated target: mean quality, at the lowest cost.",
    "rule": f"Decision rule of a target ({' | '.join(RULES)}; default {RULES[0]}).",
    "model": "--target_share's model (default: the strongest).",
    "router": "Router name (default: the workdir's default router).",
    "seed_index": "Which of the K seeds' routers to use.",
}


def _flag(name: str, define, *args):
    """The flag ``name``, defined by ``define(name, *args, help)`` unless it exists."""
    if name in flags.FLAGS:
        return flags.FlagHolder(flags.FLAGS, flags.FLAGS[name])
    return define(name, *args, _HELP[name])


@dataclasses.dataclass(frozen=True)
class PolicyFlags:
    """The policy flags one app defined (``targets_only``: no ``--budget`` / ``--wtp``)."""

    holders: dict

    def spec(self) -> dict:
        """Every policy field (and ``rule``, ``model``), None where the flag was not given."""
        out = {name: None for name in (*POLICY_FIELDS, "rule", "model")}
        out.update({name: h.value for name, h in self.holders.items()})
        return out

    def given(self) -> dict:
        """Only the fields given on the command line (a server's default policy)."""
        return {k: v for k, v in self.spec().items() if v is not None}

    def target(self) -> tuple[str, float]:
        """``("cost" | "share" | "quality", value)``: the one target given (calibrate)."""
        given = {k: v for k, v in self.given().items() if k in TARGETS}
        if len(given) != 1:
            names = ", ".join(f"--{t}" for t in TARGETS)
            raise ValueError(f"give exactly one of {names}; got {len(given)}")
        ((name, value),) = given.items()
        return name.removeprefix("target_"), float(value)


def define_policy_flags(targets_only: bool = False) -> PolicyFlags:
    """Each rule's flag (``--budget``, ``--wtp``), ``--target_cost --target_share
    --target_quality --rule --model`` (``targets_only``: the targets, ``--rule`` and
    ``--model`` only)."""
    names = TARGETS if targets_only else POLICY_FIELDS
    holders = {name: _flag(name, flags.DEFINE_float, None) for name in names}
    holders["rule"] = _flag("rule", flags.DEFINE_enum, None, list(RULES))
    holders["model"] = _flag("model", flags.DEFINE_string, None)
    return PolicyFlags(holders)


@dataclasses.dataclass(frozen=True)
class RouterFlags:
    """``--router`` and ``--seed_index``."""

    router: flags.FlagHolder
    seed_index: flags.FlagHolder


def define_router_flags() -> RouterFlags:
    """``--router`` (None: the app's default) and ``--seed_index`` (default 0)."""
    return RouterFlags(
        _flag("router", flags.DEFINE_string, None),
        _flag("seed_index", flags.DEFINE_integer, 0),
    )
