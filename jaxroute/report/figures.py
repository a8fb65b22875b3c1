"""The report's figures: quality against cost and the strong model's call rate (one
panel per decision rule), and each router's model shares along its curve.

Every figure is drawn on a plain :class:`matplotlib.figure.Figure` (no pyplot state, so
a notebook keeps its inline backend) with constrained layout, and written through
:func:`jaxroute._io.atomic_savefig`. Panels of one figure share one x label (under the
panels), and tick labels are few and short, so long model names never overlap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from jaxroute._io import atomic_savefig
from jaxroute.report.tables import seed_label
from jaxroute.routing.rules import Rule, evaluated

DPI = 110
FIGURES = ("quality_vs_cost", "strong_call_rate", "model_shares")
CAPTIONS = {
    "quality_vs_cost": "Quality against mean cost (÷ the best single model's cost), "
    "per decision rule; with several seeds, each x averages the seeds that reach it.",
    "strong_call_rate": "Routing collapse: share of prompts sent to the strong model (the "
    "best-quality model of the highest price tier) against mean cost, per rule.",
    "model_shares": "Which model each router calls along its curve (stacked shares over "
    "the operating points ordered by spending).",
}


def _subplots(*args, figsize=None, **kwargs):
    """``pyplot.subplots`` on a plain Figure: draws off-screen without switching the
    process's matplotlib backend, so a notebook keeps its inline plots."""
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


def _rule_curves(entry: Mapping[str, Any], rule: Rule, key: str, c_best: float):
    """Per seed ``(x, y)``: x = mean cost ÷ best single's cost, sorted by x."""
    sub = rule.entry(entry)
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


def _draw_mean_band(ax, curves, style, label, offset=0.0, log=True):
    """One seed: its points; several: the mean over the seeds that reach each x of a
    shared x grid (log-spaced, each seed's points linearly interpolated in log x; or
    linear with ``log=False``) with a ±1 std band. Markers sit at even distances along
    the drawn line (``offset`` staggers them between routers, so overlapping curves stay
    apart). Curves of one cost only (every model free) are one point per seed."""
    if not curves:
        return
    every = (0.02 + 0.06 * offset, 0.09)  # (start, spacing) in axes-diagonal fractions
    if len(curves) == 1:
        x, y = curves[0]
        ax.plot(x, y, "-", lw=1.4, markevery=every, ms=5, label=label, **style)
        return
    if not log:
        lo, hi = min(c[0][0] for c in curves), max(c[0][-1] for c in curves)
        if not hi > lo:
            ys = [float(np.max(y)) for _, y in curves]
            ax.errorbar([lo], [np.mean(ys)], yerr=[np.std(ys)], ls="none", ms=6, label=label,
                        capsize=3, **style)  # fmt: skip
            return
        grid, fx = np.linspace(lo, hi, 120), (lambda v: v)
    else:
        lo = max(min(c[0][0] for c in curves), 1e-12)
        hi = max(max(c[0][-1] for c in curves), lo * (1 + 1e-9))
        grid, fx = np.geomspace(lo, hi, 120), (lambda v: np.log(np.maximum(v, 1e-300)))
    ys = np.stack([np.interp(fx(grid), fx(x), y, left=np.nan, right=np.nan) for x, y in curves])
    seen = np.isfinite(ys).any(axis=0)
    grid, ys = grid[seen], ys[:, seen]
    with np.errstate(invalid="ignore"):
        mean, std = np.nanmean(ys, axis=0), np.nanstd(ys, axis=0)
    ax.plot(grid, mean, "-", lw=1.4, markevery=every, ms=5, label=label, **style)
    ax.fill_between(grid, mean - std, mean + std, color=style["color"], alpha=0.18, lw=0)


def _log_x(ax) -> None:
    """Log x axis with at most ~5 plain labels (no overlapping minor-tick labels)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=6))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.tick_params(axis="x", labelsize=8)


def _cost_panels(report, rules, key, styles, c_best, figsize, log=True):
    """One panel per rule of ``key`` (a curve field) against cost ÷ ``c_best``."""
    routers, ref = report["routers"], report.get("reference", {})
    fig, axes = _subplots(1, len(rules), figsize=figsize, squeeze=False, sharey=True)
    for ax, rule in zip(axes[0], rules, strict=True):
        for k, (name, e) in enumerate(routers.items()):
            curves = _rule_curves(e, rule, key, c_best)
            offset = k / max(1, len(routers))
            _draw_mean_band(ax, curves, styles[name], name, offset=offset, log=log)
        if "oracle" in ref:
            for x, y in _rule_curves(ref["oracle"], rule, key, c_best)[:1]:
                ax.plot(x, y, "k--", lw=1, label="oracle")
        if log:
            _log_x(ax)
        else:  # USD: a few ticks, in scientific notation
            ax.xaxis.set_major_locator(ticker.MaxNLocator(5))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        ax.set_title(rule.title)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    return fig, axes


def write_figures(
    report: Mapping[str, Any],
    workdir: str | os.PathLike,
    model_names: Sequence[str],
    strong_name: str,
) -> dict[str, str]:
    """Writes the PNGs of :data:`FIGURES` into ``workdir``; returns kind -> path (the
    model-shares figure only when some router stored its shares)."""
    paths = {k: os.path.join(os.fspath(workdir), f"{k}.png") for k in FIGURES}
    routers = report["routers"]
    ref = report.get("reference", {})
    ds = report.get("dataset", {})
    bs = ds.get("best_single") or {}
    best_name = bs.get("model", "best single")
    c_best = float(bs.get("cost") or ref.get("best_single", {}).get("cost") or 0.0)
    q_best = bs.get("quality", ref.get("best_single", {}).get("quality"))
    log = c_best > 0  # a free best single model: a linear axis in USD (0 has no log)
    if log:
        xlabel = f"mean cost per prompt ÷ the best single model's ({best_name}: {c_best:.3g} USD)"
    else:  # a free best single model: plain USD (docs/method.md §2, cost ratio undefined)
        c_best, xlabel = 1.0, "mean cost per prompt (USD)"
    x_best = 1.0 if log else 0.0  # the best single model's mean cost on the x axis
    seeds_txt = seed_label(report)
    rules = evaluated(routers.values())
    styles = {name: _router_style(k) for k, name in enumerate(routers)}
    width = 4.8 * len(rules) + 2.6  # + the legend column

    # 1. Quality against cost, one panel per rule.
    fig, axes = _cost_panels(report, rules, "quality", styles, c_best, (width, 4.6), log)
    for ax in axes[0]:
        if "zero_router" in ref:
            z = ref["zero_router"]["curve"]
            ax.plot(np.asarray(z["cost"]) / c_best, z["quality"], ":", color="0.4", lw=1.2,
                    label="zero router (single-model hull)")  # fmt: skip
        if q_best is not None:
            ax.plot([x_best], [q_best], "*", color="crimson", ms=14, ls="none",
                    label=f"best single: {best_name}")  # fmt: skip
            ax.axhline(q_best, color="crimson", lw=0.6, alpha=0.6)
    axes[0, 0].set_ylabel("mean quality")
    fig.supxlabel(xlabel, fontsize=10)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"Quality against cost — {seeds_txt}")
    atomic_savefig(paths["quality_vs_cost"], fig, dpi=DPI)

    # 2. Strong-model call rate against cost, one panel per rule.
    fig, axes = _cost_panels(report, rules, "strong_call_rate", styles, c_best, (width, 4.4), log)
    for ax in axes[0]:
        ax.axvline(x_best, color="crimson", lw=0.8, alpha=0.7, label=f"best single: {best_name}")
        ax.set_ylim(-0.03, 1.03)
    axes[0, 0].set_ylabel(f"share of prompts sent to\n{strong_name}")
    fig.supxlabel(xlabel, fontsize=10)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(
        f"Routing collapse: calls to {strong_name} — {seeds_txt}\n"
        "(the strong model: the best-quality model of the top price tier)",
        fontsize=11,
    )
    atomic_savefig(paths["strong_call_rate"], fig, dpi=DPI)

    # 3. Model shares as stacked areas over the operating points ordered by spending.
    if not _model_shares(report, rules, model_names, paths["model_shares"]):
        paths.pop("model_shares")
    return paths


def _model_shares(report, rules, model_names, path) -> bool:
    routers = report["routers"]
    names = [
        name
        for name, e in routers.items()
        if any("shares" in ((r.entry(e) or {}).get("curve") or {}) for r in rules)
    ]
    if not names:
        return False
    fig, axes = _subplots(
        len(names), len(rules), figsize=(4.6 * len(rules) + 2.6, 2.1 * len(names) + 1.0),
        squeeze=False, sharex=True, sharey=True,
    )  # fmt: skip
    used = set()
    first_seed = (report.get("dataset", {}).get("seeds") or [None])[0]
    for i, name in enumerate(names):
        for j, rule in enumerate(rules):
            ax = axes[i, j]
            curve = (rule.entry(routers[name]) or {}).get("curve") or {}
            if "shares" not in curve:
                ax.set_axis_off()
                continue
            shares = np.asarray(curve["shares"], np.float64)
            key = np.asarray(curve[rule.param], np.float64)  # spending grows to the right
            order = np.argsort(key if rule.spend_ascending else -key, kind="stable")
            shares = shares[order]
            x = (np.arange(len(order)) + 0.5) / max(1, len(order))
            used |= set(np.flatnonzero(shares.max(axis=0) > 0).tolist())
            ax.stackplot(x, shares.T, colors=[model_colour(m) for m in range(shares.shape[1])],
                         step="mid", lw=0)  # fmt: skip
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_xticks([0.25, 0.5, 0.75])  # none at the edges, where panels meet
            ax.set_yticks([0.0, 0.5, 1.0])
            if i == 0:
                ax.set_title(rule.title)
            if j == 0:
                ax.set_ylabel(f"{name}\nshare", fontsize=9)
    for ax, rule in zip(axes[-1], rules, strict=True):
        ax.set_xlabel(rule.rank_label)
    handles = [
        Patch(color=model_colour(m), label=model_names[m] if m < len(model_names) else m)
        for m in sorted(used)
    ]
    # A figure legend: as tall as the models need, without stretching the first row.
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="model")
    seed_txt = f"seed {first_seed}" if first_seed is not None else "first seed"
    fig.suptitle(f"Model shares along each router's curve — {seed_txt}")
    atomic_savefig(path, fig, dpi=DPI)
    return True
