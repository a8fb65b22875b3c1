# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Loss ablation: the losses of `jaxroute.losses` on one router, and a loss keyword's grid
#
# Each router is EquiRouter's network trained with one loss of the library (the router's
# name is the loss's name); `mlp_mse`, the MLP score regressor, is the collapsing
# reference; and one loss keyword (by default EquiRouter's pairwise weight `rank_weight`)
# is swept over a grid in one vmapped state. Everything below calls the library: the
# experiment is `jaxroute.configs.loss_ablation.ablation_config`, trained and evaluated
# by `jaxroute.train.train_and_evaluate`, which trains each router as one vmapped group
# over the seeds.
#
# Run it in Jupyter, or as a script (tables printed as text, figures written to the
# workdir): `make notebooks`, or `python notebooks/loss_ablation.py`. The parameters are
# the next cell's (a papermill `parameters` cell), each also read from the environment:
#
# * `JAXROUTE_LOSSES`: comma list of losses (keys of `jaxroute.losses.LOSSES`); empty:
#   every loss (tiny: two).
# * `JAXROUTE_SWEEP_LOSS`, `JAXROUTE_SWEEP_KEY`, `JAXROUTE_SWEEP_VALUES`: the loss, its
#   keyword argument and the comma list of values swept (empty values: no sweep).
#   Default: `equirouter`, `rank_weight`, `0,1,10,50`.
# * `JAXROUTE_DATA`: a RouterBench file or folder (features: the JAX MiniLM encoder of
#   the prompts), or `synthetic:k=v,...`. Default: the built-in synthetic benchmark with
#   its own features.
# * `JAXROUTE_TINY=1`: the CPU smoke size used by the tests (small data, 3 epochs, 2
#   seeds, two losses).
# * `JAXROUTE_WORKDIR`: where checkpoints, `report.json` and figures go (default: a new
#   temporary folder). A rerun in the same workdir resumes from its checkpoints.
#
# The same experiment from a shell, with the default losses and grid:
#
#     python -m jaxroute.launch.train --flagfile=launch/loss_ablation.flags
#
# and another grid is `--config.routers.rank_weight.hparams.rank_weight='(0,5,20)'`.

# %% tags=["parameters"]
import os

LOSSES = os.environ.get("JAXROUTE_LOSSES", "")
SWEEP_LOSS = os.environ.get("JAXROUTE_SWEEP_LOSS", "equirouter")
SWEEP_KEY = os.environ.get("JAXROUTE_SWEEP_KEY", "rank_weight")
SWEEP_VALUES = os.environ.get("JAXROUTE_SWEEP_VALUES", "0,1,10,50")
DATA = os.environ.get("JAXROUTE_DATA", "")
TINY = os.environ.get("JAXROUTE_TINY", "0") == "1"
WORKDIR = os.environ.get("JAXROUTE_WORKDIR", "")

# %%
import pathlib
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython import get_ipython
from IPython.display import Image, Markdown, display
from matplotlib.ticker import MaxNLocator, NullFormatter

from jaxroute.configs import loss_ablation
from jaxroute.losses import LOSSES as LOSS_TABLE
from jaxroute.train import experiment

IN_NOTEBOOK = get_ipython() is not None  # else a script: text instead of rich output


def as_list(value, kind=str):
    """A parameter given as a list, or as a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return [kind(x.strip()) if isinstance(x, str) else kind(x) for x in items if str(x).strip()]


def show_markdown(text):
    if IN_NOTEBOOK:
        display(Markdown(text))
    else:
        print(text)


def show_table(frame):
    if IN_NOTEBOOK:
        display(frame)
    else:
        print(frame.to_string(), end="\n\n")


def show_image(path):
    if IN_NOTEBOOK:
        display(Image(filename=str(path)))
    else:
        print(f"figure: {path}")


losses = as_list(LOSSES) or (["equirouter", "pairwise_logistic"] if TINY else None)
sweep_values = as_list(SWEEP_VALUES, float)
workdir = pathlib.Path(WORKDIR or tempfile.mkdtemp(prefix="jaxroute_loss_ablation_"))
workdir.mkdir(parents=True, exist_ok=True)
print(f"jax {jax.__version__} on {jax.default_backend()}: {jax.devices()}")
print(f"workdir: {workdir}  tiny: {TINY}")

# %% [markdown]
# ## The experiment config
#
# `ablation_config` gives one router per chosen loss, the sweep router (named after the
# swept keyword) and `mlp_mse`. The tiny setting keeps two losses so that the notebook
# runs in the test suite in about a minute on a CPU.

# %%
config = loss_ablation.ablation_config(
    losses,
    sweep_loss=SWEEP_LOSS,
    sweep_key=SWEEP_KEY,
    sweep_values=sweep_values,
    arg="tiny" if TINY else None,
)
if DATA:
    config.data.path = DATA
    if not DATA.startswith("synthetic"):
        config.features.source = "encoder"  # RouterBench has prompts, not features
print("losses in the library:", ", ".join(loss_ablation.ablation_losses()))
print("routers run here:", ", ".join(experiment.router_names(config)))
print(f"sweep: {SWEEP_LOSS}'s {SWEEP_KEY} over {sweep_values}")
print("data:", config.data.path, "| features:", config.features.source)
print("seeds:", tuple(config.seeds), "| epochs:", config.train.epochs)

# %% [markdown]
# ## Train and evaluate
#
# One call: data → features → cost model and routers (each router a vmapped group over
# the seeds, checkpointed every epoch) → budget sweep → `report.json`, `report.md` and
# figures in the workdir.

# %%
report = experiment.train_and_evaluate(config, workdir)
show_markdown(report["headline"])

# %% [markdown]
# ## Metrics
#
# Means over the seeds (see `jaxroute.routing.evaluate_router`): peak quality, nAUC and
# AIQ of the quality–cost curve, C\* (cheapest cost reaching the best single model's
# quality) and its ratio CR to that model's cost, RCI, and the share of prompts sent to
# the strongest (dearest) model at the largest budget. `(ref)`: reference routers.

# %%
METRICS = ["peak", "nauc", "aiq", "cost_ratio", "rci", "strong_call_rate_at_max_budget"]
rows = {name: {m: e.get(m) for m in METRICS} for name, e in report["routers"].items()}
rows.update(
    {f"(ref) {name}": {m: e.get(m) for m in METRICS} for name, e in report["reference"].items()}
)
metrics = pd.DataFrame.from_dict(rows, orient="index", columns=METRICS).astype(float)
show_table(metrics.sort_values("nauc", ascending=False).round(4))


# %% [markdown]
# ## Quality–cost and strong-model call rate
#
# Drawn from the report dict (first seed's curves). A router that collapses sends most
# prompts to the strong (dearest) model once the budget affords it, whether or not a
# cheaper model answers them just as well. The budget rule can only pick the strong
# model when the budget reaches its predicted cost, so the call-rate panel shows the
# budgets from there on (linear axis).


# %%
def show(fig, name):
    """Saves a figure to the workdir and shows it (inline in a notebook)."""
    for ax in fig.axes:  # log axes over a narrow range: label the major ticks only
        ax.xaxis.set_minor_formatter(NullFormatter())
    path = workdir / name
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    show_image(path)


def strong_budget_window(curves):
    """x-limits: from just below the first budget at which any router calls the strong model."""
    budgets = np.concatenate([c["budget"] for c in curves])
    called = budgets[np.concatenate([c["strong_call_rate"] for c in curves]) > 0]
    high = budgets.max()
    low = called.min() if called.size else budgets.min()
    pad = 0.05 * (high - low) or 0.05 * high
    return low - pad, high + pad


strong = report["dataset"].get("strong_model")
colors = plt.cm.tab20(np.linspace(0, 1, 20))
fig, (ax_q, ax_s) = plt.subplots(1, 2, figsize=(14, 5))
for i, (name, entry) in enumerate(report["routers"].items()):
    curve, style = entry["curve"], {"color": colors[i % 20], "ms": 3, "label": name}
    ax_q.plot(curve["cost"], curve["quality"], ".-", **style)
    ax_s.plot(curve["budget"], curve["strong_call_rate"], ".-", **style)
oracle = report["reference"]["oracle"]["curve"]
ax_q.plot(oracle["cost"], oracle["quality"], "k--", label="oracle")
best = report["reference"]["best_single"]
ax_q.plot([best["cost"]], [best["quality"]], "r*", ms=12, label="best single model")
ax_q.axhline(best["quality"], color="r", lw=0.5)
ax_q.set(xscale="log", xlabel="mean cost per prompt (USD)", ylabel="mean quality")
ax_q.set_title("quality vs cost")
ax_s.set(xlabel="budget (USD per prompt)", ylim=(-0.02, 1.02))
ax_s.set_xlim(*strong_budget_window([e["curve"] for e in report["routers"].values()]))
ax_s.xaxis.set_major_locator(MaxNLocator(4))
ax_s.set_ylabel(f"share sent to {strong}" if strong else "strong-model share")
ax_s.set_title("strong-model call rate vs budget")
ax_s.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
show(fig, "nb_curves.png")

# %% [markdown]
# The report's own figures (all seeds' first curve, the reference routers, and which
# model each budget buys) are in the workdir:

# %%
show_image(report["paths"]["model_shares"])

# %% [markdown]
# ## One loss keyword, K routers in one vmapped state
#
# Routers that differ only in a loss keyword (EquiRouter's loss is `MSE + w · pairwise
# logistic`; `w` is `rank_weight`) have the same shapes, so the sweep router declares
# `hparams={SWEEP_KEY: values}` and the trainer stacks the values (times the seeds) into
# one state: one compiled, vmapped step per epoch trains all of them. The report has one
# entry per value, `SWEEP_KEY[SWEEP_KEY=v]`, evaluated like every other router (means
# over the seeds).

# %%
if sweep_values:
    print(f"{SWEEP_KEY} values:", config.routers[SWEEP_KEY].hparams[SWEEP_KEY])
    sweep = [report["routers"][f"{SWEEP_KEY}[{SWEEP_KEY}={v:g}]"] for v in sweep_values]
    by_value = pd.DataFrame(
        {
            SWEEP_KEY: sweep_values,
            "peak": [r["peak"] for r in sweep],
            "nauc": [r["nauc"] for r in sweep],
            "strong_call_rate_at_max_budget": [r["strong_call_rate_at_max_budget"] for r in sweep],
        }
    ).set_index(SWEEP_KEY)
    default = LOSS_TABLE[SWEEP_LOSS].defaults.get(SWEEP_KEY)
    if default in sweep_values and SWEEP_LOSS in report["routers"]:
        print(
            f"{SWEEP_KEY}={default:g} is the loss's default: peak "
            f"{by_value.loc[default, 'peak']:.4f} here, "
            f"{report['routers'][SWEEP_LOSS]['peak']:.4f} for the run's {SWEEP_LOSS} "
            "(same seeds, trained on its own)"
        )
    show_table(by_value.round(4))

# %%
if sweep_values:
    fig, (ax_w, ax_c) = plt.subplots(1, 2, figsize=(13, 4))
    x = np.arange(len(sweep_values))
    ax_w.plot(x, by_value["peak"], "o-", label="peak quality")
    ax_w.plot(x, by_value["nauc"], "s-", label="nAUC")
    ax_w.plot(x, by_value["strong_call_rate_at_max_budget"], "^-", label="strong call rate @ max")
    ax_w.set_xticks(x, [f"{v:g}" for v in sweep_values])
    ax_w.set(xlabel=SWEEP_KEY, ylim=(-0.02, 1.02), title=f"effect of {SWEEP_KEY}")
    ax_w.legend(fontsize=8)
    for v, r in zip(sweep_values, sweep, strict=True):
        curve = r["curve"]
        ax_c.plot(curve["budget"], curve["strong_call_rate"], ".-", ms=3, label=f"{v:g}")
    ax_c.set(xlabel="budget (USD per prompt)", ylabel="strong-model share")
    ax_c.set_xlim(*strong_budget_window([r["curve"] for r in sweep]))
    ax_c.xaxis.set_major_locator(MaxNLocator(4))
    ax_c.set(ylim=(-0.02, 1.02), title=f"strong-model call rate vs budget, by {SWEEP_KEY}")
    ax_c.legend(fontsize=8, title=SWEEP_KEY)
    show(fig, "nb_sweep.png")
