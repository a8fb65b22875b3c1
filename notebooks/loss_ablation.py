# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Loss ablation: every ranking loss of `jaxroute.losses` on one router
#
# Each router is EquiRouter's network trained with one loss of the library (the router's
# name is the loss's name); `mlp_mse`, the MLP score regressor, is the collapsing
# reference. Everything below calls the library: the experiment is the config
# `jaxroute/configs/loss_ablation.py`, trained and evaluated by
# `jaxroute.train.train_and_evaluate`, which trains each router as one vmapped group over
# the seeds. The same run from a shell:
#
#     python -m jaxroute.launch.train --flagfile=launch/loss_ablation.flags
#
# Environment variables:
#
# * `JAXROUTE_DATA`: a RouterBench file or folder (features: the JAX MiniLM encoder of
#   the prompts). Default: the built-in synthetic benchmark with its own features.
# * `JAXROUTE_TINY=1`: the CPU smoke size used by the tests (small data, 3 epochs, 2
#   seeds, a few of the losses).
# * `JAXROUTE_WORKDIR`: where checkpoints, `report.json` and figures go (default: a new
#   temporary folder). A rerun in the same workdir resumes from its checkpoints.

# %%
import os
import pathlib
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, Markdown, display
from matplotlib.ticker import MaxNLocator, NullFormatter

from jaxroute.configs import loss_ablation
from jaxroute.train import experiment

TINY = os.environ.get("JAXROUTE_TINY", "0") == "1"
DATA = os.environ.get("JAXROUTE_DATA", "")
WORKDIR = pathlib.Path(
    os.environ.get("JAXROUTE_WORKDIR") or tempfile.mkdtemp(prefix="jaxroute_loss_ablation_")
)
WORKDIR.mkdir(parents=True, exist_ok=True)
print(f"jax {jax.__version__} on {jax.default_backend()}: {jax.devices()}")
print(f"workdir: {WORKDIR}  tiny: {TINY}")

# %% [markdown]
# ## The experiment config
#
# `loss_ablation.get_config` gives one router per entry of the loss table
# `jaxroute.losses.LOSSES`, `rank_weight` (EquiRouter's loss at several pairwise weights,
# below) and `mlp_mse`. The tiny setting keeps three routers so that the notebook runs in the test
# suite in about a minute on a CPU; the full setting runs every loss.

# %%
config = loss_ablation.get_config("tiny" if TINY else None)
if DATA:
    config.data.path = DATA
    config.features.source = "encoder"  # RouterBench has prompts, not features
if TINY:
    config.run_routers = "equirouter,pairwise_logistic,rank_weight,mlp_mse"
print("losses in the library's ablation:", ", ".join(loss_ablation.ablation_losses()))
print("routers run here:", ", ".join(experiment.router_names(config)))
print("data:", config.data.path, "| features:", config.features.source)
print("seeds:", tuple(config.seeds), "| epochs:", config.train.epochs)

# %% [markdown]
# ## Train and evaluate
#
# One call: data → features → cost model and routers (each router a vmapped group over
# the seeds, checkpointed every epoch) → budget sweep → `report.json`, `report.md` and
# figures in the workdir.

# %%
report = experiment.train_and_evaluate(config, WORKDIR)
display(Markdown(report["headline"]))

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
metrics.sort_values("nauc", ascending=False).round(4)


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
    """Saves a figure to the workdir and shows it (inline under any matplotlib backend)."""
    for ax in fig.axes:  # log axes over a narrow range: label the major ticks only
        ax.xaxis.set_minor_formatter(NullFormatter())
    path = WORKDIR / name
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    display(Image(filename=str(path)))


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
display(Image(filename=report["paths"]["model_shares"]))

# %% [markdown]
# ## One loss hyper-parameter, K routers in one vmapped state
#
# EquiRouter's loss is `MSE + w · pairwise logistic`. Routers that differ only in `w`
# (`rank_weight`) have the same shapes, so the config's `rank_weight` router declares
# `hparams={"rank_weight": (0, 1, 10, 50)}` and the trainer stacks the four weights (times
# the seeds) into one state: one compiled, vmapped step per epoch trains all of them. The
# report has one entry per weight, `rank_weight[rank_weight=w]`, evaluated like every
# other router (means over the seeds).

# %%
WEIGHTS = list(loss_ablation.RANK_WEIGHTS)
print("rank_weight values:", config.routers.rank_weight.hparams.rank_weight)
sweep = [report["routers"][f"rank_weight[rank_weight={w:g}]"] for w in WEIGHTS]
k = len(WEIGHTS)
by_weight = pd.DataFrame(
    {
        "rank_weight": WEIGHTS,
        "peak": [r["peak"] for r in sweep],
        "nauc": [r["nauc"] for r in sweep],
        "strong_call_rate_at_max_budget": [r["strong_call_rate_at_max_budget"] for r in sweep],
    }
).set_index("rank_weight")
run_w50 = report["routers"]["equirouter"]["peak"]
print(
    f"w=50 is the loss's default: peak {by_weight.loc[50.0, 'peak']:.4f} here, "
    f"{run_w50:.4f} for the run's equirouter (same seeds, trained on its own)"
)
by_weight.round(4)

# %%
fig, (ax_w, ax_c) = plt.subplots(1, 2, figsize=(13, 4))
x = np.arange(k)
ax_w.plot(x, by_weight["peak"], "o-", label="peak quality")
ax_w.plot(x, by_weight["nauc"], "s-", label="nAUC")
ax_w.plot(x, by_weight["strong_call_rate_at_max_budget"], "^-", label="strong call rate @ max")
ax_w.set_xticks(x, [f"{w:g}" for w in WEIGHTS])
ax_w.set(xlabel="rank_weight w", ylim=(-0.02, 1.02), title="effect of the pairwise weight")
ax_w.legend(fontsize=8)
for w, r in zip(WEIGHTS, sweep, strict=True):
    ax_c.plot(r["curve"]["budget"], r["curve"]["strong_call_rate"], ".-", ms=3, label=f"w={w:g}")
ax_c.set(xlabel="budget (USD per prompt)", ylabel="strong-model share")
ax_c.set_xlim(*strong_budget_window([r["curve"] for r in sweep]))
ax_c.xaxis.set_major_locator(MaxNLocator(4))
ax_c.set(ylim=(-0.02, 1.02), title="strong-model call rate vs budget, by w")
ax_c.legend(fontsize=8)
show(fig, "nb_rank_weight.png")
