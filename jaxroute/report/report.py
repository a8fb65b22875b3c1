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

``strong_model`` records the model whose call rate is tracked (strong@max, strong@C*,
the collapse figure) and why: the rule of :data:`jaxroute.routing.STRONG_MODEL_RULE`
(docs/method.md §2), or ``config.eval.strong_model``. ``warnings`` lists what makes a
figure or a metric read differently than usual (a tracked model outside the best single
model's price tier, an undefined cost ratio); report.md repeats them under its header.
Every file is written through :mod:`jaxroute._io` (a temporary file and a rename), so a
full disk leaves the previous report whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from jaxroute._io import atomic_write_json, atomic_write_text
from jaxroute.report.figures import CAPTIONS, model_colour, write_figures  # noqa: F401
from jaxroute.report.tables import (  # noqa: F401 (re-exported)
    HEADLINE_COLUMNS,
    TABLE_COLUMNS,
    clean,
    fitted_table,
    headline_table,
    rule_table,
    seed_label,
)
from jaxroute.routing.aggregate import METRICS, aggregate_seeds  # noqa: F401 (re-exported)
from jaxroute.routing.metrics import STRONG_MODEL_RULE, cost_warnings
from jaxroute.routing.rules import RULES, evaluated


def strong_model_record(dataset: Mapping[str, Any], strong_model: str | None) -> dict[str, Any]:
    """Which model's call rate the report tracks, by which rule, and its price tier.

    ``strong_model`` is the name set by ``config.eval.strong_model`` (``None``: the rule's
    choice, ``dataset["strong_model"]``). The tier is every model with the tracked
    model's mean cost; ``in_best_single_tier`` says whether the best single model is one
    of them.
    """
    mean_cost = dict(dataset.get("mean_cost") or {})
    name = strong_model or dataset.get("strong_model")
    best = (dataset.get("best_single") or {}).get("model")
    tier = [m for m, c in mean_cost.items() if name in mean_cost and c == mean_cost[name]]
    return {
        "model": name,
        "rule": "config.eval.strong_model" if strong_model else STRONG_MODEL_RULE,
        "price_tier": tier,
        "in_best_single_tier": best in tier if tier else None,
    }


def report_warnings(dataset: Mapping[str, Any], strong: Mapping[str, Any]) -> list[str]:
    """One line per thing a reader must know before reading the numbers."""
    out = []
    best = (dataset.get("best_single") or {}).get("model")
    if strong.get("in_best_single_tier") is False:
        out.append(
            f"the tracked strong model {strong['model']} is not in the price tier of the best "
            f"single model {best}: strong@max, strong@C* and the collapse figure count calls "
            "to a model other than the one the routers must match"
        )
    if best is not None and dataset.get("mean_cost"):
        out += cost_warnings(best, dataset["mean_cost"])
    return out


def build_report(
    dataset: Mapping[str, Any],
    routers: Mapping[str, Sequence[Mapping[str, Any]]],
    reference: Mapping[str, Any] | None = None,
    fitted: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    strong_model: str | None = None,
) -> dict[str, Any]:
    """The ``report.json`` content (JSON-able) that :func:`write_report` writes."""
    entries = {name: clean(aggregate_seeds(res)) for name, res in routers.items()}
    for name, records in (fitted or {}).items():
        if name not in entries:
            raise ValueError(f"fitted choices of '{name}': not a router of {sorted(entries)}")
        entries[name]["fitted"] = clean(list(records))
    ds = clean(dict(dataset))
    strong = strong_model_record(ds, strong_model)
    return {
        "dataset": ds,
        "routers": entries,
        "reference": clean(dict(reference or {})),
        "strong_model": strong,
        "warnings": report_warnings(ds, strong),
    }


def _missing_figure(line: str, paths: Mapping[str, str]) -> bool:
    return line.startswith("![") and not any(line.endswith(f"({k}.png)") for k in paths)


def markdown(report: Mapping[str, Any], figures: bool) -> list[str]:
    """The lines of report.md (figure lines for every figure kind; the caller drops
    those not written)."""
    ds = report["dataset"]
    strong = report["strong_model"]
    rules = evaluated(report["routers"].values())
    md = [
        "# Routing report",
        "",
        f"{ds.get('n_prompts')} prompts, {ds.get('n_models')} models; best single: "
        f"{ds.get('best_single', {}).get('model')}; strong model: {strong['model']} "
        f"({strong['rule']}); top-2 tie share {_fmt_share(ds.get('top2_tie_share'))}; "
        f"{seed_label(report)}.",
        "",
    ]
    md += [f"**Warning:** {w}." for w in report.get("warnings", [])]
    md += ["", "Decision rules: " + "; ".join(r.describe for r in RULES.values()) + ". "
        "C* = cost at the best single model's quality (— never reached), "
        "CR = C*/C_best; nAUC and AIQ on the shared cost range [L, U]; RCI and strong@max "
        "(share of prompts sent to the strong model) at the largest budget (λ = 0), where "
        "both rules are the argmax of the scores; strong@C* at the point C*. Mean ± std "
        "over seeds where several.",
        "",
        headline_table(report),
        "",
    ]  # fmt: skip
    for rule in rules:
        md += [f"## All metrics, {rule.title}", "", rule_table(report, rule.name), ""]
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
        for key, caption in CAPTIONS.items():
            md += [f"![{caption}]({key}.png)", "", f"*{caption}*", ""]
    return md


def _fmt_share(v: Any) -> str:
    return "—" if v is None else f"{v:.3f}"


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
      strong_model: name of the strong model set by the user (``config.eval.strong_model``;
        default ``dataset["strong_model"]``, the rule's choice).
      fitted: name -> per-seed records of the choices the router's ``fit`` made
        (``[{"seed": s, ...}, ...]``, JSON-able), kept as ``routers[name]["fitted"]``
        (non-finite floats become ``null``) and tabled in report.md; optional.
      figures: also write the PNGs.

    Returns:
      dict kind → path: ``json``, ``markdown`` and the figures (``quality_vs_cost``,
      ``strong_call_rate``, ``model_shares``).
    """
    workdir = os.fspath(workdir)
    model_names = list(model_names or dataset.get("models", []))
    report = build_report(dataset, routers, reference, fitted, strong_model)
    paths = {
        "json": os.path.join(workdir, "report.json"),
        "markdown": os.path.join(workdir, "report.md"),
    }
    md = markdown(report, figures)
    for line in report["warnings"]:  # one line each on the console too
        logging.warning("report: %s", line)
    atomic_write_json(paths["json"], report, allow_nan=False, indent=1)
    if figures:
        name = report["strong_model"]["model"] or "strong model"
        paths.update(write_figures(report, workdir, model_names, name))
        md = [line for line in md if not _missing_figure(line, paths)]
    atomic_write_text(paths["markdown"], "\n".join(md))
    return paths
