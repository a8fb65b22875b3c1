"""Evaluation results → ``report.json``, ``report.md`` and matplotlib figures.

Entry point: :func:`write_report`. Inputs are the plain dicts of
:func:`jaxroute.routing.evaluate_router` (one per seed) and
:func:`jaxroute.routing.dataset_summary`; :func:`reference_entries` builds the reference
block from the test arrays. JSON is written with ``allow_nan=False``: an unreachable
cost ratio is ``null`` with ``"best_single_reached": false``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from jax.typing import ArrayLike

METRICS = (
    "peak",
    "cost_at_best_single",
    "cost_ratio",
    "nauc",
    "aiq",
    "rci",
    "strong_call_rate_at_max_budget",
)
CURVE_KEYS = ("budget", "cost", "quality", "strong_call_rate")


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


def _seed_entry(res: Mapping[str, Any], keep_shares: bool) -> dict[str, Any]:
    entry = {k: res.get(k) for k in METRICS}
    reached = res.get("best_single_reached", res.get("cost_ratio") is not None)
    entry["best_single_reached"] = bool(reached)
    for k in ("apgr", "cpt50", "quality_at_max_budget", "cost_at_max_budget"):
        if res.get(k) is not None:
            entry[k] = res[k]
    curve = {k: list(res["curve"][k]) for k in CURVE_KEYS}
    if keep_shares and "shares" in res["curve"]:
        curve["shares"] = res["curve"]["shares"]
    entry["curve"] = curve
    return entry


def aggregate_seeds(per_seed: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One router's report entry from its per-seed :func:`evaluate_router` results.

    Top-level metrics are means over seeds (with ``<metric>_std``, population std, when
    there are several); ``cost_at_best_single`` / ``cost_ratio`` average the seeds that
    reached the best single model and are ``null`` when none did;
    ``reached_best_single`` is ``"k/n"`` and ``best_single_reached`` is ``k == n``.
    The top-level curve (with model shares) is the first seed's.
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
        if n > 1:
            out[f"{name}_std"] = float(np.std(vals)) if vals else None
    for name in ("apgr", "cpt50"):
        vals = [s[name] for s in seeds if s.get(name) is not None]
        if vals:
            out[name] = float(np.mean(vals))
            if n > 1:
                out[f"{name}_std"] = float(np.std(vals))
    out["best_single_reached"] = k == n
    out["reached_best_single"] = f"{k}/{n}"
    out["n_seeds"] = n
    out["curve"] = first["curve"]
    out["seeds"] = seeds
    return out


def reference_entries(
    quality: ArrayLike,
    cost: ArrayLike,
    *,
    budgets: Any = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Reference block for the report: oracle, best single, cheapest, random, zero router.

    Routers (oracle, best single, cheapest, random) go through
    :func:`jaxroute.routing.evaluate_router` with the same ``budgets`` spec; the zero
    router is the convex hull of the single-model points, with its curve metrics.

    Returns:
      dict name → entry (report entry fields plus, for single models, ``model`` index).
    """
    from jaxroute.routing import (
        best_single_model,
        cheapest_model,
        cost_bounds,
        curve_metrics,
        evaluate_router,
        oracle_router,
        random_router,
        single_model_router,
        zero_router,
    )

    q = np.asarray(quality, np.float32)
    c = np.asarray(cost, np.float32)
    n, m = q.shape
    best, cheap = best_single_model(q, c), cheapest_model(c)
    ref: dict[str, Any] = {}
    ref["oracle"] = aggregate_seeds([evaluate_router(*oracle_router(q, c), q, c, budgets=budgets)])
    for name, model in (("best_single", best), ("cheapest", cheap)):
        s, pc = single_model_router(model, n, m)
        entry = aggregate_seeds([evaluate_router(s, pc, q, c, budgets=budgets)])
        entry["model"] = model
        entry["quality"] = float(q[:, model].astype(np.float64).mean())
        entry["cost"] = float(c[:, model].astype(np.float64).mean())
        ref[name] = entry
    ref["random"] = aggregate_seeds(
        [evaluate_router(*random_router(q, c, seed), q, c, budgets=budgets)]
    )
    hc, hq = zero_router(q, c)
    bounds = cost_bounds(c)
    zr = curve_metrics(
        hc,
        hq,
        best_single_quality=float(q[:, best].astype(np.float64).mean()),
        best_single_cost=float(c[:, best].astype(np.float64).mean()),
        bounds=bounds,
    )
    zr["curve"] = {"cost": hc.tolist(), "quality": hq.tolist()}
    ref["zero_router"] = zr
    return ref


def _fmt(v: Any, std: Any = None, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    s = f"{v:.{digits}g}"
    if std is not None:
        s += f" ± {std:.2g}"
    return s


TABLE_COLUMNS = (
    ("peak", "peak"),
    ("nauc", "nAUC"),
    ("aiq", "AIQ"),
    ("cost_at_best_single", "C*"),
    ("cost_ratio", "CR"),
    ("reached_best_single", "reached"),
    ("rci", "RCI"),
    ("strong_call_rate_at_max_budget", "strong@max"),
)


def headline_table(report: Mapping[str, Any]) -> str:
    """Markdown table, routers × metrics (mean ± std over seeds when several), then the
    reference rows."""
    head = "| router | " + " | ".join(t for _, t in TABLE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    rows = list(report.get("routers", {}).items())
    rows += [(f"*{k}*", v) for k, v in report.get("reference", {}).items()]
    for name, e in rows:
        cells = [_fmt(e.get(k), e.get(f"{k}_std")) for k, _ in TABLE_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _subplots(*args, figsize=None, **kwargs):
    """``pyplot.subplots`` on a plain Figure: draws off-screen without switching the
    process's matplotlib backend, so a notebook keeps its inline plots."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def _figures(report, workdir, model_names, strong_name) -> dict[str, str]:
    paths = {}
    routers = report["routers"]
    ref = report.get("reference", {})

    fig, ax = _subplots(figsize=(7, 5))
    for name, e in routers.items():
        ax.plot(e["curve"]["cost"], e["curve"]["quality"], ".-", ms=3, label=name)
    if "oracle" in ref:
        ax.plot(
            ref["oracle"]["curve"]["cost"], ref["oracle"]["curve"]["quality"], "k--", label="oracle"
        )
    if "zero_router" in ref:
        z = ref["zero_router"]["curve"]
        ax.plot(z["cost"], z["quality"], ":", color="gray", label="zero router")
    if "best_single" in ref:
        b = ref["best_single"]
        ax.plot([b["cost"]], [b["quality"]], "r*", ms=12, label="best single")
        ax.axhline(b["quality"], color="r", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per prompt (USD)")
    ax.set_ylabel("mean quality")
    ax.legend(fontsize=7)
    ax.set_title("quality vs cost")
    paths["quality_vs_cost"] = os.path.join(workdir, "quality_vs_cost.png")
    fig.savefig(paths["quality_vs_cost"], dpi=100, bbox_inches="tight")

    fig, ax = _subplots(figsize=(7, 4))
    # Single-model references are flat lines at 0 or 1 on a budget axis of their own.
    refs = [(k, v) for k, v in ref.items() if k not in ("best_single", "cheapest")]
    for name, e in list(routers.items()) + refs:
        curve = e.get("curve", {})
        if "strong_call_rate" in curve and curve.get("budget"):
            ax.plot(curve["budget"], curve["strong_call_rate"], ".-", ms=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("budget (USD per prompt)")
    ax.set_ylabel(f"share of prompts sent to {strong_name}")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("strong-model call rate vs budget")
    paths["strong_call_rate"] = os.path.join(workdir, "strong_call_rate.png")
    fig.savefig(paths["strong_call_rate"], dpi=100, bbox_inches="tight")

    with_shares = [(k, e) for k, e in routers.items() if "shares" in e["curve"]]
    if with_shares:
        fig, axes = _subplots(
            len(with_shares), 1, figsize=(7, 2.6 * len(with_shares)), squeeze=False
        )
        for ax, (name, e) in zip(axes[:, 0], with_shares, strict=True):
            shares = np.asarray(e["curve"]["shares"], np.float64)
            x = np.asarray(e["curve"]["budget"], np.float64)
            ax.stackplot(x, shares.T, labels=list(model_names), step="post")
            if np.all(x > 0):
                ax.set_xscale("log")
            ax.set_title(name, fontsize=9)
            ax.set_ylabel("share")
            ax.set_ylim(0, 1)
        axes[-1, 0].set_xlabel("budget (USD per prompt)")
        fig.tight_layout()
        axes[0, 0].legend(fontsize=6, ncol=3, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        paths["model_shares"] = os.path.join(workdir, "model_shares.png")
        fig.savefig(paths["model_shares"], dpi=100, bbox_inches="tight")
    return paths


def write_report(
    workdir: str | os.PathLike,
    dataset: Mapping[str, Any],
    routers: Mapping[str, Sequence[Mapping[str, Any]]],
    reference: Mapping[str, Any] | None = None,
    model_names: Sequence[str] | None = None,
    strong_model: str | None = None,
    *,
    figures: bool = True,
) -> dict[str, str]:
    """Writes ``report.json``, ``report.md`` and PNG figures into ``workdir``.

    Args:
      workdir: output folder (created).
      dataset: :func:`jaxroute.routing.dataset_summary` of the test set.
      routers: name → list of per-seed :func:`jaxroute.routing.evaluate_router` results.
      reference: :func:`reference_entries` (optional).
      model_names: names for the usage plot (default ``dataset["models"]``).
      strong_model: name of the strong model (default ``dataset["strong_model"]``).
      figures: also write the PNGs.

    Returns:
      dict kind → path: ``json``, ``markdown`` and the figures (``quality_vs_cost``,
      ``strong_call_rate``, ``model_shares``).
    """
    workdir = os.fspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    model_names = list(model_names or dataset.get("models", []))
    strong_model = strong_model or dataset.get("strong_model", "strong model")
    report = {
        "dataset": _clean(dict(dataset)),
        "routers": {name: _clean(aggregate_seeds(res)) for name, res in routers.items()},
        "reference": _clean(dict(reference or {})),
    }
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
        f"top-2 tie share {_fmt(ds.get('top2_tie_share'))}.",
        "",
        "C* = cost at the best single model's quality (— never reached), CR = C*/C_best; "
        "nAUC and AIQ on the shared cost range [L, U]; RCI and strong@max at the largest "
        "budget. Mean ± std over seeds where several.",
        "",
        headline_table(report),
        "",
    ]
    with open(paths["markdown"], "w") as f:
        f.write("\n".join(md))
    if figures:
        paths.update(_figures(report, workdir, model_names, strong_model))
    return paths
