"""Shared pieces of the fault tests: tiny configs, data files, app runs, tree snapshots."""

import hashlib
import os
import pathlib
import pickle

import pytest
from _apps import run_app  # noqa: F401  (re-exported to the tests here)

from jaxroute import data as jd
from jaxroute.configs.base import get_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Evil:
    """Unpickling this creates ``marker`` (if any unpickler ever calls os.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_pickle(path, marker):
    path.write_bytes(pickle.dumps(Evil(marker)))
    return path


def tiny_config(data_path="synthetic:n_prompts=120,feature_dim=8", epochs=2, routers="mlp"):
    c = get_config("tiny")
    c.data.path = str(data_path)
    c.seeds = (0,)
    c.run_routers = routers
    c.train.epochs = epochs
    c.cost_model.enabled = False
    c.eval.n_budgets = 8
    return c


def snapshot(folder) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (what "nothing changed" means)."""
    folder = pathlib.Path(folder)
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def error_lines(stderr: str) -> list[str]:
    """The lines an app printed that are neither absl log lines (I/W/E + date prefix)
    nor progress lines (``[   3.1s] ...``): the errors, and any library dump."""
    import re

    log = re.compile(r"^([IWEF]\d{4} |\[\s*\d+\.\ds\] )")
    return [ln for ln in stderr.splitlines() if ln.strip() and not log.match(ln)]


@pytest.fixture
def good_csv(tmp_path):
    path = tmp_path / "data" / "good.csv"
    path.parent.mkdir()
    jd.to_wide_frame(jd.synthetic(n_prompts=12, seed=0)).to_csv(path, index=False)
    return path
