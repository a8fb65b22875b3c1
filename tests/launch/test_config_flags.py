"""``--config`` and ``--config.FIELD=VALUE``: flags after a flagfile replace, whole; new
routers, loss keywords and grids from flags; typos are one line, exit 2, nothing written.

The in-process tests run the same steps as the apps (flagfile expansion, splitting the
overrides off, resolving); one subprocess trains with the issue's exact command shape.
"""

import json

import jax.numpy as jnp
import pytest
from _apps import ROOT, run_app

from jaxroute.configs._overrides import ConfigError, apply_overrides
from jaxroute.launch.config_flag import resolve, split_overrides
from jaxroute.launch.packaged import expand_flagfiles
from jaxroute.train import groups
from jaxroute.train.config_checks import check_config

USER_CONFIG = """
import ml_collections
from jaxroute.configs import base

def get_config(arg=None):
    c = base.get_config("tiny")
    c.tags = ["a", "b", "c"]          # a list field
    c.routers.equirouter.hparams = ml_collections.ConfigDict({"rank_weight": (0.0, 1.0, 10.0)})
    return c
"""


def _command(tmp_path, flagfile_lines, *args):
    """What ``train`` resolves for ``--flagfile=F ARGS`` (F holds ``flagfile_lines``)."""
    (tmp_path / "user.py").write_text(USER_CONFIG)
    flagfile = tmp_path / "f.flags"
    flagfile.write_text("# a comment\n" + "\n".join(flagfile_lines) + "\n")
    argv = expand_flagfiles([f"--flagfile={flagfile}", *args])
    rest, overrides = split_overrides(argv)
    spec = next(a.split("=", 1)[1] for a in reversed(rest) if a.startswith("--config="))
    return resolve(spec, overrides), rest


def test_tuple_after_flagfile_replaces(tmp_path):
    config, rest = _command(
        tmp_path,
        [f"--config={tmp_path / 'user.py'}", "--config.seeds=(42,43,44)", "--workdir=w"],
        "--config.seeds=(42,43)",
    )
    assert config.seeds == (42, 43)
    assert rest == [f"--config={tmp_path / 'user.py'}", "--workdir=w"]
    # One element, a bare comma list, and the last of several flags.
    config, _ = _command(
        tmp_path, [f"--config={tmp_path / 'user.py'}"], "--config.seeds=5", "--config.seeds=7,8"
    )
    assert config.seeds == (7, 8)


def test_list_after_flagfile_replaces(tmp_path):
    config, _ = _command(
        tmp_path,
        [f"--config={tmp_path / 'user.py'}", "--config.tags=[x,y,z,w]"],
        "--config.tags=[q]",
    )
    assert config.tags == ["q"]


def test_dict_after_flagfile_replaces(tmp_path):
    user = f"--config={tmp_path / 'user.py'}"
    # The whole dict: the config's key is gone, not merged.
    config, _ = _command(
        tmp_path,
        [user, "--config.routers.equirouter.hparams.rank_weight=(0,50)"],
        "--config.routers.equirouter.hparams={'tie_weight': (0.5, 2.0)}",
    )
    assert config.routers.equirouter.hparams.to_dict() == {"tie_weight": (0.5, 2.0)}
    # One key of it: that key's tuple replaced, the values as floats.
    config, _ = _command(
        tmp_path,
        [user, "--config.routers.equirouter.hparams.rank_weight=(0,50)"],
        "--config.routers.equirouter.hparams.rank_weight=(3,4)",
    )
    assert config.routers.equirouter.hparams.to_dict() == {"rank_weight": (3.0, 4.0)}
    # loss_kwargs, a dict the config leaves empty.
    config, _ = _command(
        tmp_path,
        [user, "--config.routers.equirouter.loss_kwargs={'tie_weight': 2.0, 'rank_weight': 5}"],
        "--config.routers.equirouter.loss_kwargs={'tie_weight': 3.0}",
    )
    assert config.routers.equirouter.loss_kwargs.to_dict() == {"tie_weight": 3.0}


def test_scalars_and_config_after_flagfile_replace(tmp_path):
    config, _ = _command(
        tmp_path,
        ["--config=base:tiny", "--config.train.epochs=4", "--config.cost_model.enabled=false"],
        "--config=loss_ablation:tiny",
        "--config.train.epochs=2",
        "--config.cost_model.enabled",
    )
    assert "rank_weight" in config.routers  # the later --config, with the flagfile's fields
    assert config.train.epochs == 2 and config.cost_model.enabled is True


def test_a_new_router_its_loss_keywords_and_a_grid_from_flags():
    overrides = [
        ("routers.hinge.loss_kwargs.margin", "3"),  # before the kind: order does not matter
        ("routers.hinge.model", "equirouter"),
        ("routers.hinge.loss", "pairwise_hinge"),
        ("routers.hinge.model_kwargs.trunk_sizes", "(8,)"),
        ("routers.hinge.hparams.tie_weight", "(0.5,1,2)"),
    ]
    config = resolve("base:tiny", overrides)
    rc = config.routers.hinge
    assert rc.model == "equirouter" and rc.loss == "pairwise_hinge"
    assert rc.model_kwargs.trunk_sizes == (8,) and rc.model_kwargs.embed_dim == 128
    names, grid = groups.hparam_variants(rc)
    assert names == ["[tie_weight=0.5]", "[tie_weight=1]", "[tie_weight=2]"]
    assert grid == {"tie_weight": [0.5, 1.0, 2.0]}
    # The margin reaches the loss: hinge max(0, m - (s_i - s_j)) over the two preferred
    # pairs of scores (0, 0, 1), labels (1, 0, 0): (m + (m + 1)) / 2.
    objective = groups.loss_objective(rc)
    out = jnp.array([[0.0, 0.0, 1.0]])
    batch = {
        "quality": jnp.array([[1.0, 0.0, 0.0]]),
        "cost": jnp.ones((1, 3)),
        "mask": jnp.ones(1, bool),
    }
    assert float(objective(out, batch)) == pytest.approx(3.5)
    assert float(objective(out, batch, margin=0.5)) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([("train.epocs", "3")], "'epocs' is not a field of train; did you mean 'epochs'?"),
        ([("routers.foo.model", "bar")], "'bar' is not a router kind (valid: "),
        ([("routers.foo.loss", "mse")], "give --config.routers.foo.model=KIND"),
        ([("routers.mlp.loss", "msee")], "'msee' is not a loss; did you mean 'mse'?"),
        (
            [("routers.equirouter.loss_kwargs.rank_wieght", "1")],
            "did you mean 'rank_weight'? (valid: rank_weight, tie_break, tie_weight)",
        ),
        ([("routers.equirouter.hparams.tau", "(1,2)")], "'tau' is not a keyword argument"),
        ([("routers.knn.loss", "mse")], "'loss' is not a field of router kind 'knn'"),
        ([("routers.mlp.model_kwargs.hidden", "(3,)")], "did you mean 'hidden_sizes'?"),
        ([("train.optimizer", "adamx")], "must be one of adam, adamw, sgd; did you mean 'adam'?"),
        ([("train.epochs", "0")], "config.train.epochs=0: must be an integer >= 1"),
        ([("train.epochs", "2.5")], "'2.5' is not an integer"),
        ([("train.weight_decay", "0.1")], "optimizer=adamw"),
        ([("seeds", "(1,1)")], "repeats [1]"),
        (
            [("data.split", "leave_one_task_out"), ("seeds", "(0,1)")],
            "give one seed (the task's index) per run",
        ),
        ([("train", "{}")], "is a group of fields"),
        ([("cost_model.enabled", "maybe")], "expects true or false"),
        (
            [
                ("routers.equirouter.hparams.rank_weight", "(1,2)"),
                ("routers.equirouter.hparams.tie_weight", "(1,2,3)"),
            ],
            "the same number",
        ),
    ],
)
def test_bad_overrides_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        resolve("base:tiny", overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_config_names_suggest_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        resolve("base:tiyn", [])
    with pytest.raises(ConfigError, match="did you mean 'base'"):
        resolve("bsae", [])


def test_check_config_refuses_what_python_callers_build():
    config = apply_overrides(resolve("base:tiny", []), [])
    with config.unlocked():
        config.train.schedule = "cosin"
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        check_config(config)


@pytest.mark.slow
def test_cli_errors_exit_2_with_one_line_and_write_nothing(tmp_path):
    wd = tmp_path / "w"
    for arg in ("--config.train.optimizer=adamx", "--config.routers.foo.model=bar"):
        proc = run_app("train", "--config=base:tiny", f"--workdir={wd}", arg)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
        assert not wd.exists()  # the corrected command finds a fresh workdir


@pytest.mark.slow
def test_issue_command_seeds_after_flagfile_end_to_end(tmp_path):
    """``--flagfile=launch/loss_ablation.flags --config.seeds='(42,43)'`` (tiny sizes, one
    router): config.json and report.json hold exactly (42, 43)."""
    wd = tmp_path / "w"
    proc = run_app(
        "train",
        "--flagfile=launch/loss_ablation.flags",
        "--config.seeds=(42,43)",
        "--config=loss_ablation:tiny",
        "--config.data.path=synthetic:n_prompts=120,feature_dim=8",
        "--config.train.epochs=1",
        "--config.run_routers=hinge",
        "--config.routers.hinge.model=linear",
        "--config.routers.hinge.loss=pairwise_hinge",
        "--config.routers.hinge.hparams.margin=(0.5,1,2)",
        f"--workdir={wd}",
        check=True,
    )
    assert "hinge[margin=0.5]" in proc.stdout
    config = json.loads((wd / "config.json").read_text())
    assert config["seeds"] == [42, 43]
    assert config["routers"]["hinge"]["hparams"] == {"margin": [0.5, 1.0, 2.0]}
    report = json.loads((wd / "report.json").read_text())
    assert report["dataset"]["seeds"] == [42, 43]
    names = ["hinge[margin=0.5]", "hinge[margin=1]", "hinge[margin=2]"]
    assert sorted(report["routers"]) == names
    assert all(report["routers"][n]["n_seeds"] == 2 for n in names)


def test_flagfile_expansion_is_in_place_and_refuses_a_cycle(tmp_path):
    a, b = tmp_path / "a.flags", tmp_path / "b.flags"
    a.write_text(f"--x=1\n  # indented comment\n--flagfile={b}\n--y=2\n")
    b.write_text("// c++ comment\n--z=3\n")
    assert expand_flagfiles(["--w=0", f"--flagfile={a}", "--y=4"]) == [
        "--w=0",
        "--x=1",
        "--z=3",
        "--y=2",
        "--y=4",
    ]
    b.write_text(f"--flagfile={a}\n")
    with pytest.raises(ValueError, match="includes itself"):
        expand_flagfiles([f"--flagfile={a}"])
    assert (ROOT / "launch/loss_ablation.flags").exists()


def test_every_packaged_flagfile_resolves_and_passes_the_checks():
    from jaxroute.launch.packaged import packaged_flagfiles

    for name in packaged_flagfiles():
        argv = expand_flagfiles([f"--flagfile={name}"])
        rest, overrides = split_overrides(argv)
        spec = next(a.split("=", 1)[1] for a in reversed(rest) if a.startswith("--config="))
        config = resolve(spec, overrides)  # raises ConfigError naming the field
        for path, text in overrides:
            if path == "seeds":  # what the flagfile says is what the run uses
                assert config.seeds == tuple(int(s) for s in text.strip("()").split(",") if s)
