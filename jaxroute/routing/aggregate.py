"""One report entry from per-seed results: the same code for routers and references.

:func:`aggregate_seeds` turns K per-seed :func:`~jaxroute.routing.evaluate_router`
results (or reference results, which carry a few more fields) into one entry: metric
means and population stds over the seeds, the seeds that reached the best single model,
the first seed's curve, and every seed's entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxroute.routing.rules import RULES

METRICS = (
    "peak",
    "cost_at_best_single",
    "cost_ratio",
    "nauc",
    "aiq",
    "rci",
    "strong_call_rate_at_max_budget",
    "strong_call_rate_at_best_single",
)
CURVE_KEYS = ("budget", "cost", "quality", "strong_call_rate")
# Averaged when present (the two-model metrics; a single-model reference's own point).
OPTIONAL_NUMBERS = ("apgr", "cpt50", "quality", "cost")
# Kept per seed: a name (a reference's model), never averaged.
LABELS = ("model",)


def _seed_entry(res: Mapping[str, Any], keep_shares: bool) -> dict[str, Any]:
    entry = {k: res.get(k) for k in METRICS}
    reached = res.get("best_single_reached", res.get("cost_ratio") is not None)
    entry["best_single_reached"] = bool(reached)
    for k in ("apgr", "cpt50", "quality_at_max_budget", "cost_at_max_budget", *LABELS):
        if res.get(k) is not None:
            entry[k] = res[k]
    for k in ("quality", "cost"):
        if isinstance(res.get(k), int | float):
            entry[k] = res[k]
    curve = {k: list(v) for k, v in res["curve"].items() if k != "shares"}
    if keep_shares and "shares" in res["curve"]:
        curve["shares"] = res["curve"]["shares"]
    entry["curve"] = curve
    return entry


def aggregate_seeds(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One router's (or reference's) report entry from its per-seed results.

    Top-level metrics are means over seeds (with ``<metric>_std``, population std, when
    there are several); ``cost_at_best_single`` / ``cost_ratio`` average the seeds that
    reached the best single model and are ``null`` when none did;
    ``reached_best_single`` is ``"k/n"`` and ``best_single_reached`` is ``k == n``.
    A reference's ``model`` (a name) is kept as is when every seed agrees, else as the
    list of the seeds' names; its ``quality`` / ``cost`` are averaged like the metrics.
    The top-level curve (with model shares) is the first seed's; every seed's curve is
    under ``seeds``. When the results carry another rule's entry (``routers[name]["lambda"]``
    for the λ rule: each key of :data:`~jaxroute.routing.rules.RULES`), the entry gains
    it, aggregated the same way.
    """
    if not per_seed:
        raise ValueError("no seeds")
    seeds = [_seed_entry(r, keep_shares=False) for r in per_seed]
    first = _seed_entry(per_seed[0], keep_shares=True)
    n = len(seeds)
    k = sum(s["best_single_reached"] for s in seeds)
    out: dict[str, Any] = {}
    for name in METRICS:
        vals = [s[name] for s in seeds if s[name] is not None]
        out[name] = float(np.mean(vals)) if vals else None
        if n > 1:  # no spread from fewer than two seeds (e.g. C* reached once)
            out[f"{name}_std"] = float(np.std(vals)) if len(vals) > 1 else None
    for name in OPTIONAL_NUMBERS:
        vals = [s[name] for s in seeds if s.get(name) is not None]
        if vals:
            out[name] = float(np.mean(vals))
            if n > 1:
                out[f"{name}_std"] = float(np.std(vals))
    for name in LABELS:
        labels = [s[name] for s in seeds if name in s]
        if labels:
            out[name] = labels[0] if len(set(labels)) == 1 else labels
    out["best_single_reached"] = k == n
    out["reached_best_single"] = f"{k}/{n}"
    out["n_seeds"] = n
    out["curve"] = first["curve"]
    out["seeds"] = seeds
    for rule in RULES.values():  # every other rule's entry, aggregated the same way
        if rule.key is not None and all(rule.key in r for r in per_seed):
            out[rule.key] = aggregate_seeds([r[rule.key] for r in per_seed])
    return out
