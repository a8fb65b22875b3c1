"""The README's everyday commands, run as written and in order, at tiny sizes.

The block under "## Everyday commands" is read from the README and run line by line in
an empty directory after a tiny main job (what ``make run`` leaves there). Only sizes
change: the training lines get a tiny synthetic dataset and network appended (their own
flags, epochs and workdirs are kept, so a clash between two runs still shows), the
data sizes of embed/diagnose shrink and benchmark runs ``--quick``. ``jaxroute`` is
this interpreter's ``python -m jaxroute.cli`` (forked from the suite's pre-imported
interpreter, ``tests/_zygote.py``).
"""

import json
import pathlib
import re
import shlex

import pytest
from _apps import run_module

pytestmark = pytest.mark.slow  # docs/testing.md

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_TRAIN = [
    "--config.data.path=synthetic:n_prompts=120,feature_dim=8",
    "--config.seeds=(0,)",
    "--config.run_routers=equirouter,knn",
    "--config.routers.equirouter.model_kwargs.trunk_sizes=(16,16,16)",
]

TINY_BEST = ["--config.seeds=(0,)"]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Everyday commands", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [ln for ln in block.splitlines() if ln.strip() and not ln.startswith(". ")]


def tiny(argv: list[str]) -> list[str]:
    app = argv[1]
    if app == "train" and any("best_router" in a for a in argv):
        # Its --data_path wins over config.data.path: the size is shrunk in place.
        small = [a.replace("n_prompts=4000", "n_prompts=150") for a in argv]
        assert small != argv, f"no n_prompts=4000 to shrink in {argv}"
        return small + TINY_BEST
    if app == "train" and "--config_help" not in argv:
        return argv + TINY_TRAIN
    if app in ("embed", "diagnose"):
        return [a.replace("n_prompts=500", "n_prompts=60") for a in argv]
    if app == "benchmark":
        return argv + ["--quick"]
    return argv


def test_readme_everyday_commands_run_in_order(tmp_path):
    commands = readme_commands()
    assert commands[0].startswith("jaxroute --help") and len(commands) >= 8
    make_run = "jaxroute train --flagfile=launch/equirouter_synthetic.flags"
    for line in [make_run, *commands]:
        argv = shlex.split(line.split("  #")[0])
        assert argv[0] == "jaxroute", line
        argv = tiny(argv) if len(argv) > 1 else argv
        proc = run_module("jaxroute.cli", argv[1:], cwd=tmp_path, timeout=600)  # app env
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
        if argv[1] == "route" and "workdirs/best_router" in line:
            assert '"router": "best"' in proc.stdout, proc.stdout[-2000:]
    assert (tmp_path / "workdirs/synthetic_10ep/report.json").exists()
    assert (tmp_path / "features.npy").exists()
    report = json.loads((tmp_path / "workdirs/equirouter_synthetic/report.json").read_text())
    info = json.loads((tmp_path / "workdirs/equirouter_synthetic/run_info.json").read_text())
    assert report["dataset"]["encoder"]["encoder"] == "all-MiniLM-L6-v2"
    assert report["dataset"]["encoder"] == {k: info[k] for k in report["dataset"]["encoder"]}
    assert (tmp_path / "workdirs/best_router/fitted/best").is_dir()  # route read its state
