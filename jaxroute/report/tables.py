"""Markdown tables of a report: the headline (both rules side by side), one table per
decision rule, the choices made in fit. Also :func:`clean`: the JSON-safe copy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxroute.routing.rules import PRIMARY, RULES, get_rule


def clean(x: Any) -> Any:
    """Plain-Python, JSON-safe copy (numpy → Python, non-finite floats → None)."""
    if isinstance(x, Mapping):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    return x


# Decimals per metric in the markdown tables (the same for every row and for the std).
_DECIMALS = {
    "peak": 3,
    "nauc": 3,
    "aiq": 3,
    "cost_ratio": 3,
    "rci": 3,
    "strong_call_rate_at_max_budget": 3,
    "strong_call_rate_at_best_single": 3,
}


def _fmt(v: Any, std: Any = None, digits: int | None = 3, sig: bool = False) -> str:
    """A table cell: fixed decimals (or 3 significant digits for USD), ``± std``."""
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    spec = ".3g" if sig else f".{digits}f"
    s = f"{v:{spec}}"
    if std is not None:
        s += f" ± {std:{'.2g' if sig else spec}}"
    return s


def _cell(entry: Mapping[str, Any] | None, key: str) -> str:
    if not entry:
        return "—"
    v, std = entry.get(key), entry.get(f"{key}_std")
    if key == "cost_at_best_single":
        return _fmt(v, std, sig=True)
    return _fmt(v, std, _DECIMALS.get(key, 3))


TABLE_COLUMNS = (
    ("peak", "peak"),
    ("nauc", "nAUC"),
    ("aiq", "AIQ"),
    ("cost_at_best_single", "C* (USD)"),
    ("cost_ratio", "CR"),
    ("reached_best_single", "reached"),
    ("rci", "RCI"),
    ("strong_call_rate_at_max_budget", "strong@max"),
    ("strong_call_rate_at_best_single", "strong@C*"),
)
# The side-by-side headline: these metrics under the budget rule, then the λ rule.
HEADLINE_COLUMNS = (
    ("cost_ratio", "CR"),
    ("reached_best_single", "reached"),
    ("nauc", "nAUC"),
    ("rci", "RCI"),
    ("strong_call_rate_at_max_budget", "strong@max"),
)


def _entry(entry: Mapping[str, Any], rule: str) -> Mapping[str, Any] | None:
    return get_rule(rule).entry(entry)


def _rows(report: Mapping[str, Any]):
    rows = list(report.get("routers", {}).items())
    return rows + [(f"*{k}*", v) for k, v in report.get("reference", {}).items()]


def headline_table(report: Mapping[str, Any]) -> str:
    """Markdown table, routers (then the reference rows) × the key metrics under both
    decision rules side by side (each rule's ``short`` tag: ``B`` budget rule, ``λ`` λ
    rule); mean ± std over seeds when several."""
    head = ["router"] + [f"{t} {r.short}" for _, t in HEADLINE_COLUMNS for r in RULES.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in _rows(report):
        cells = [_cell(r.entry(e), k) for k, _ in HEADLINE_COLUMNS for r in RULES.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rule_table(report: Mapping[str, Any], rule: str = PRIMARY) -> str:
    """Markdown table of every metric under one rule (a name of ``RULES``)."""
    head = "| router | " + " | ".join(t for _, t in TABLE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    for name, e in _rows(report):
        sub = _entry(e, rule)
        cells = [_cell(sub, k) for k, _ in TABLE_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fitted_cell(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fitted_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of one router's per-seed ``fitted`` records: one row per seed,
    a column per scalar field (nested fields, such as cross-fitted scores, stay in
    report.json)."""
    keys = list(
        dict.fromkeys(k for r in records for k, v in r.items() if not isinstance(v, Mapping | list))
    )
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in records:
        lines.append("| " + " | ".join(_fitted_cell(r.get(k)) for k in keys) + " |")
    return "\n".join(lines)


def seed_label(report: Mapping[str, Any]) -> str:
    seeds = report.get("dataset", {}).get("seeds") or []
    n = max([e.get("n_seeds", 1) for e in report.get("routers", {}).values()] or [1])
    if n > 1:
        return f"mean of {n} seeds (±1 std band)"
    return f"seed {seeds[0]}" if seeds else "one seed"
