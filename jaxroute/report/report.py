"""Evaluation results → ``report.json``, ``report.md`` and matplotlib figures.

Entry point: :func:`write_report`. Inputs are the plain dicts of
:func:`jaxroute.routing.evaluate_router` (one per seed), aggregated here by
:func:`jaxroute.routing.aggregate_seeds`, the reference entries (aggregated by the same
function from :func:`jaxroute.routing.reference_results`) and
:func:`jaxroute.routing.dataset_summary`. This package only formats. JSON is written
with ``allow_nan=False``: an unreachable cost ratio is ``null`` with
``"best_single_reached": false``.

A router whose ``fit`` makes choices of its own on the training data (its
:class:`~jaxroute.models.RouterSpec` has ``choices``, e.g. ``taskprior``'s cross-fitted
temperature, blend weight and cost margin) gets ``routers[name]["fitted"]``: one record
per seed, ``{"seed": s, ...}``, as the router reports them; report.md shows their scalar
fields in a table. Other routers have no ``fitted`` key.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxroute.routing.aggregate import METRICS, aggregate_seeds  # noqa: F401 (re-exported)


def _clean(x: Any) -> Any:
    """Plain-Python, JSON-safe copy (numpy → Python, non-finite floats → None)."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
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
RULES = (("budget", "budget rule"), ("lambda", "λ rule"))
RULES_KEYS = tuple(r for r, _ in RULES)


def _rule_entry(entry: Mapping[str, Any], rule: str) -> Mapping[str, Any] | None:
    return entry if rule == "budget" else entry.get("lambda")


def _rows(report: Mapping[str, Any]):
    rows = list(report.get("routers", {}).items())
    return rows + [(f"*{k}*", v) for k, v in report.get("reference", {}).items()]


def headline_table(report: Mapping[str, Any]) -> str:
    """Markdown table, routers (then the reference rows) × the key metrics under both
    decision rules side by side (``B:`` budget rule, ``λ:`` λ rule); mean ± std over
    seeds when several."""
    head = ["router"] + [f"{t} {r}" for _, t in HEADLINE_COLUMNS for r in ("B", "λ")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in _rows(report):
        cells = [_cell(_rule_entry(e, r), k) for k, _ in HEADLINE_COLUMNS for r in RULES_KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rule_table(report: Mapping[str, Any], rule: str = "budget") -> str:
    """Markdown table of every metric under one rule (``"budget"`` or ``"lambda"``)."""
    head = "| router | " + " | ".join(t for _, t in TABLE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    for name, e in _rows(report):
        sub = _rule_entry(e, rule)
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


def _subplots(*args, figsize=None, **kwargs):
    """``pyplot.subplots`` on a plain Figure: draws off-screen without switching the
    process's matplotlib backend, so a notebook keeps its inline plots."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(*args, **kwargs)


# 30 qualitative colours, each unlike the others in hue or lightness: matplotlib's tab10
# first (the usual 10-model case), then high-contrast named colours (navy, maroon, teal,
# magenta, lime, olive, ...) chosen so no two look alike. Model j always gets colour j.
MODEL_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#f3c300", "#000075", "#a1caf1", "#800000", "#c2b280",
    "#008080", "#f032e6", "#bfef45", "#f99379", "#dcbeff",
    "#ffd8b1", "#808000", "#aaffc3", "#654522", "#e25822",
    "#2b3d26", "#fffac8", "#875692", "#42d4f4", "#000000",
)  # fmt: skip
ROUTER_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")


def model_colour(j: int) -> str:
    """Colour of model ``j`` (distinct for the first 30 models, then cycling)."""
    return MODEL_COLOURS[j % len(MODEL_COLOURS)]


def _router_style(k: int) -> dict[str, Any]:
    return {
        "color": MODEL_COLOURS[k % 10] if k < 10 else MODEL_COLOURS[10 + k % 20],
        "marker": ROUTER_MARKERS[k % len(ROUTER_MARKERS)],
    }


def _seed_label(report: Mapping[str, Any]) -> str:
    seeds = report.get("dataset", {}).get("seeds") or []
    n = max([e.get("n_seeds", 1) for e in report.get("routers", {}).values()] or [1])
    if n > 1:
        return f"mean of {n} seeds (±1 std band)"
    return f"seed {seeds[0]}" if seeds else "one seed"


def _rule_curves(entry: Mapping[str, Any], rule: str, key: str, c_best: float):
    """Per seed ``(x, y)``: x = mean cost ÷ best single's cost, sorted by x."""
    sub = _rule_entry(entry, rule)
    if not sub:
        return []
    seeds = sub.get("seeds") or [sub]
    out = []
    for s in seeds:
        curve = s.get("curve", {})
        if key not in curve or "cost" not in curve:
            continue
        x = np.asarray(curve["cost"], np.float64) / c_best
        y = np.asarray(curve[key], np.float64)
        order = np.argsort(x, kind="stable")
        out.append((x[order], y[order]))
    return out


def _draw_mean_band(ax, curves, style, label, offset=0.0):
    """One seed: its points; several: the mean over the seeds that reach each x of a
    shared log-x grid (each seed's points linearly interpolated in log x) with a ±1 std
    band. Markers sit at even distances along the drawn line (``offset`` staggers them
    between routers, so overlapping curves stay apart)."""
    if not curves:
        return
    every = (0.02 + 0.06 * offset, 0.09)  # (start, spacing) in axes-diagonal fractions
    if len(curves) == 1:
        x, y = curves[0]
        ax.plot(x, y, "-", lw=1.4, markevery=every, ms=5, label=label, **style)
        return
    lo = max(min(c[0][0] for c in curves), 1e-12)
    hi = max(max(c[0][-1] for c in curves), lo * (1 + 1e-9))
    grid = np.geomspace(lo, hi, 120)
    ys = np.stack(
        [
            np.interp(np.log(grid), np.log(np.maximum(x, 1e-300)), y, left=np.nan, right=np.nan)
            for x, y in curves
        ]
    )
    seen = np.isfinite(ys).any(axis=0)
    grid, ys = grid[seen], ys[:, seen]
    with np.errstate(invalid="ignore"):
        mean, std = np.nanmean(ys, axis=0), np.nanstd(ys, axis=0)
    ax.plot(grid, mean, "-", lw=1.4, markevery=every, ms=5, label=label, **style)
    ax.fill_between(grid, mean - std, mean + std, color=style["color"], alpha=0.18, lw=0)


def _figure_paths(workdir: str) -> dict[str, str]:
    names = ("quality_vs_cost", "strong_call_rate", "model_shares")
    return {k: os.path.join(workdir, f"{k}.png") for k in names}


def _figures(report, workdir, model_names, strong_name) -> dict[str, str]:
    paths = _figure_paths(workdir)
    routers = report["routers"]
    ref = report.get("reference", {})
    ds = report.get("dataset", {})
    bs = ds.get("best_single") or {}
    best_name = bs.get("model", "best single")
    c_best = float(bs.get("cost") or ref.get("best_single", {}).get("cost") or 1.0)
    q_best = bs.get("quality", ref.get("best_single", {}).get("quality"))
    seed_label = _seed_label(report)
    rules = [r for r in RULES if any(_rule_entry(e, r[0]) for e in routers.values())]
    styles = {name: _router_style(k) for k, name in enumerate(routers)}
    xlabel = f"mean cost per prompt ÷ {best_name}'s ({c_best:.3g} USD)"

    # 1. Quality against cost, one panel per rule.
    fig, axes = _subplots(1, len(rules), figsize=(6 * len(rules), 4.6), squeeze=False)
    for ax, (rule, rule_title) in zip(axes[0], rules, strict=True):
        for k, (name, e) in enumerate(routers.items()):
            curves = _rule_curves(e, rule, "quality", c_best)
            _draw_mean_band(ax, curves, styles[name], name, offset=k / max(1, len(routers)))
        if "oracle" in ref:
            for x, y in _rule_curves(ref["oracle"], rule, "quality", c_best)[:1]:
                ax.plot(x, y, "k--", lw=1, label="oracle")
        if "zero_router" in ref:
            z = ref["zero_router"]["curve"]
            ax.plot(np.asarray(z["cost"]) / c_best, z["quality"], ":", color="0.4", lw=1.2,
                    label="zero router (single-model hull)")  # fmt: skip
        if q_best is not None:
            ax.plot([1.0], [q_best], "*", color="crimson", ms=14, ls="none",
                    label=f"best single: {best_name}")  # fmt: skip
            ax.axhline(q_best, color="crimson", lw=0.6, alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mean quality")
        ax.set_title(rule_title)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"Quality against cost — {seed_label}")
    fig.savefig(paths["quality_vs_cost"], dpi=110)

    # 2. Strong-model call rate against cost, one panel per rule.
    fig, axes = _subplots(1, len(rules), figsize=(6 * len(rules), 4.4), squeeze=False)
    for ax, (rule, rule_title) in zip(axes[0], rules, strict=True):
        for k, (name, e) in enumerate(routers.items()):
            curves = _rule_curves(e, rule, "strong_call_rate", c_best)
            _draw_mean_band(ax, curves, styles[name], name, offset=k / max(1, len(routers)))
        if "oracle" in ref:
            for x, y in _rule_curves(ref["oracle"], rule, "strong_call_rate", c_best)[:1]:
                ax.plot(x, y, "k--", lw=1, label="oracle")
        ax.axvline(1.0, color="crimson", lw=0.8, alpha=0.7, label=f"best single: {best_name}")
        ax.set_xscale("log")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"share of prompts sent to {strong_name}")
        ax.set_title(rule_title)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"Routing collapse: calls to {strong_name} — {seed_label}")
    fig.savefig(paths["strong_call_rate"], dpi=110)

    # 3. Model shares as stacked areas over the operating points' rank (cheapest first).
    with_shares = [
        (name, rule, rt)
        for name, e in routers.items()
        for rule, rt in rules
        if "shares" in ((_rule_entry(e, rule) or {}).get("curve") or {})
    ]
    if with_shares:
        names_r = list(dict.fromkeys(n for n, _, _ in with_shares))
        fig, axes = _subplots(
            len(names_r), len(rules), figsize=(5.2 * len(rules), 2.3 * len(names_r) + 0.8),
            squeeze=False, sharex=True, sharey=True,
        )  # fmt: skip
        used = set()
        first_seed = (ds.get("seeds") or [None])[0]
        for i, name in enumerate(names_r):
            for j, (rule, rule_title) in enumerate(rules):
                ax = axes[i, j]
                curve = (_rule_entry(routers[name], rule) or {}).get("curve") or {}
                if "shares" not in curve:
                    ax.set_axis_off()
                    continue
                shares = np.asarray(curve["shares"], np.float64)
                # Budget rank: budgets ascending, λ descending (spending grows to the right).
                key = np.asarray(curve["budget"] if rule == "budget" else curve["lambda"])
                order = np.argsort(key if rule == "budget" else -key, kind="stable")
                shares = shares[order]
                x = (np.arange(len(order)) + 0.5) / max(1, len(order))
                used |= set(np.flatnonzero(shares.max(axis=0) > 0).tolist())
                ax.stackplot(x, shares.T, colors=[model_colour(m) for m in range(shares.shape[1])],
                             step="mid", lw=0)  # fmt: skip
                ax.set_xlim(0, 1)
                ax.set_ylim(0, 1)
                if i == 0:
                    ax.set_title(rule_title)
                if j == 0:
                    ax.set_ylabel(f"{name}\nshare")
        for ax, (rule, _) in zip(axes[-1], rules, strict=True):
            ax.set_xlabel(
                "budget rank (B ascending)" if rule == "budget" else "λ rank (λ descending)"
            )
        from matplotlib.patches import Patch

        handles = [
            Patch(color=model_colour(m), label=model_names[m] if m < len(model_names) else m)
            for m in sorted(used)
        ]
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="model")
        seed_txt = f"seed {first_seed}" if first_seed is not None else "first seed"
        fig.suptitle(f"Model shares along each router's curve — {seed_txt}")
        fig.savefig(paths["model_shares"], dpi=110)
    else:
        paths.pop("model_shares")
    return paths


FIGURE_CAPTIONS = {
    "quality_vs_cost": "Quality against mean cost (÷ the best single model's cost), "
    "budget rule and λ rule; with several seeds, each x averages the seeds that reach it.",
    "strong_call_rate": "Routing collapse: share of prompts sent to the strong model "
    "against mean cost, per rule.",
    "model_shares": "Which model each router calls along its curve (stacked shares over "
    "the budget rank: budgets ascending, λ descending).",
}


def _missing_figure(line: str, paths: Mapping[str, str]) -> bool:
    return line.startswith("![") and not any(line.endswith(f"({k}.png)") for k in paths)


def build_report(
    dataset: Mapping[str, Any],
    routers: Mapping[str, Sequence[Mapping[str, Any]]],
    reference: Mapping[str, Any] | None = None,
    fitted: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The ``report.json`` content (JSON-able) that :func:`write_report` writes."""
    entries = {name: _clean(aggregate_seeds(res)) for name, res in routers.items()}
    for name, records in (fitted or {}).items():
        if name not in entries:
            raise ValueError(f"fitted choices of '{name}': not a router of {sorted(entries)}")
        entries[name]["fitted"] = _clean(list(records))
    return {
        "dataset": _clean(dict(dataset)),
        "routers": entries,
        "reference": _clean(dict(reference or {})),
    }


def write_report(
    workdir: str | os.PathLike,
    dataset: Mapping[str, Any],
    routers: Mapping[str, Sequence[Mapping[str, Any]]],
    reference: Mapping[str, Any] | None = None,
    model_names: Sequence[str] | None = None,
    strong_model: str | None = None,
    *,
    fitted: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    figures: bool = True,
) -> dict[str, str]:
    """Writes ``report.json``, ``report.md`` and PNG figures into ``workdir``.

    Args:
      workdir: output folder (created).
      dataset: :func:`jaxroute.routing.dataset_summary` of the test set.
      routers: name → list of per-seed :func:`jaxroute.routing.evaluate_router` results.
      reference: name -> aggregated entry (:func:`jaxroute.routing.aggregate_seeds` of
        :func:`jaxroute.routing.reference_results`), optional.
      model_names: names for the usage plot (default ``dataset["models"]``).
      strong_model: name of the strong model (default ``dataset["strong_model"]``).
      fitted: name -> per-seed records of the choices the router's ``fit`` made
        (``[{"seed": s, ...}, ...]``, JSON-able), kept as ``routers[name]["fitted"]``
        (non-finite floats become ``null``) and tabled in report.md; optional.
      figures: also write the PNGs.

    Returns:
      dict kind → path: ``json``, ``markdown`` and the figures (``quality_vs_cost``,
      ``strong_call_rate``, ``model_shares``).
    """
    workdir = os.fspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    model_names = list(model_names or dataset.get("models", []))
    strong_model = strong_model or dataset.get("strong_model", "strong model")
    report = build_report(dataset, routers, reference, fitted)
    paths = {"json": os.path.join(workdir, "report.json")}
    with open(paths["json"], "w") as f:
        json.dump(report, f, allow_nan=False, indent=1)
    paths["markdown"] = os.path.join(workdir, "report.md")
    ds = report["dataset"]
    md = [
        "# Routing report",
        "",
        f"{ds.get('n_prompts')} prompts, {ds.get('n_models')} models; best single: "
        f"{ds.get('best_single', {}).get('model')}; strong model: {strong_model}; "
        f"top-2 tie share {_fmt(ds.get('top2_tie_share'))}; {_seed_label(report)}.",
        "",
        "Two decision rules: B = budget rule (per-prompt cap on the predicted cost, swept "
        "over the budget grid), λ = willingness-to-pay rule (argmax of s − λ·ĉ, swept over "
        "every breakpoint). C* = cost at the best single model's quality (— never reached), "
        "CR = C*/C_best; nAUC and AIQ on the shared cost range [L, U]; RCI and strong@max "
        "(share of prompts sent to the strong model) at the largest budget (λ = 0), where "
        "both rules are the argmax of the scores; strong@C* at the point C*. Mean ± std "
        "over seeds where several.",
        "",
        headline_table(report),
        "",
    ]
    for rule, title in RULES:
        if rule == "budget" or any(_rule_entry(e, rule) for e in report["routers"].values()):
            md += [f"## All metrics, {title}", "", rule_table(report, rule), ""]
    chose = {name: e["fitted"] for name, e in report["routers"].items() if e.get("fitted")}
    if chose:
        md += [
            "## Choices made in fit",
            "",
            "What each router chose on its own training prompts, per seed (the scores "
            "that chose it are under `fitted` in report.json).",
            "",
        ]
        for name, records in chose.items():
            md += [f"### {name}", "", fitted_table(records), ""]
    if figures:
        md += ["## Figures", ""]
        for key, caption in FIGURE_CAPTIONS.items():
            md += [f"![{caption}]({key}.png)", "", f"*{caption}*", ""]
    if figures:
        paths.update(_figures(report, workdir, model_names, strong_model))
        md = [line for line in md if not _missing_figure(line, paths)]
    with open(paths["markdown"], "w") as f:
        f.write("\n".join(md))
    return paths
