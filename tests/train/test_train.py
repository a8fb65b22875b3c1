"""The trainer: vmapped steps, exact resume, corrupt checkpoints, NaN stop, devices."""

import json
import os
import pathlib

import jax
import numpy as np
import pytest

from jaxroute.configs.base import get_config
from jaxroute.train import _trainer as T
from jaxroute.train import experiment as E

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny(routers="mlp", **changes):
    c = get_config("tiny")
    c.run_routers = routers
    c.train.epochs = changes.pop("epochs", 3)
    for k, v in changes.items():
        node, _, field = k.rpartition(".")
        setattr(c[node] if node else c, field, v)
    return c


def _params(workdir, config, name="mlp"):
    data = E.load_experiment_data(config)
    splits = E.make_splits(config, data)
    train = splits.train[0]
    _, params = E.trained_group(
        name,
        config.routers[name],
        config,
        splits.seeds,
        data.features.shape[1],
        data.num_models,
        train.num_prompts,
        workdir,
    )
    return params


def test_epoch_indices_cover_and_reshuffle():
    idx, valid = T.epoch_indices(10, 4, seed=3, epoch=0)
    assert idx.shape == (3, 4) and valid.sum() == 10
    assert sorted(idx[valid].tolist()) == list(range(10))
    idx2, _ = T.epoch_indices(10, 4, seed=3, epoch=1)
    assert idx[valid].tolist() != idx2[valid].tolist()
    np.testing.assert_array_equal(idx, T.epoch_indices(10, 4, seed=3, epoch=0)[0])


@pytest.mark.slow
def test_vmapped_group_equals_separate_runs(tmp_path):
    """K seeds in one vmapped state give the same parameters as K single runs."""
    c = tiny(seeds=(0, 1), epochs=2)
    c.cost_model.enabled = False
    E.fit(c, tmp_path / "both")
    both = _params(tmp_path / "both", c)
    for k, seed in enumerate((0, 1)):
        ck = tiny(seeds=(seed,), epochs=2)
        ck.cost_model.enabled = False
        E.fit(ck, tmp_path / f"s{seed}")
        one = _params(tmp_path / f"s{seed}", ck)
        for a, b in zip(jax.tree.leaves(both), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(np.asarray(a)[k], np.asarray(b)[0], rtol=2e-5, atol=2e-6)


@pytest.mark.slow
def test_loss_falls_and_metrics_written(tmp_path):
    c = tiny(routers="mlp,equirouter", epochs=4)
    E.fit(c, tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for name in ("mlp", "equirouter", "cost_model"):
        losses = [np.mean(r["train_loss"]) for r in rows if r["router"] == name]
        assert len(losses) == 4 and all(np.isfinite(losses))
        assert losses[-1] < losses[0], (name, losses)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["epochs"] == 4


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path, monkeypatch):
    c = tiny(routers="mlp", epochs=4)
    E.fit(c, tmp_path / "full")
    full = _params(tmp_path / "full", c)

    real_write = E.MetricWriter.write

    def write_then_die(self, **rec):
        real_write(self, **rec)
        if rec["router"] == "mlp" and rec["epoch"] == 2:
            raise _Interrupt

    monkeypatch.setattr(E.MetricWriter, "write", write_then_die)
    with pytest.raises(_Interrupt):
        E.fit(c, tmp_path / "cut")
    monkeypatch.setattr(E.MetricWriter, "write", real_write)
    # Killed after epoch 2's record, before its checkpoint: the resumed run starts from
    # epoch 1 and replaces that record (metrics.jsonl ends with each epoch once).
    assert sorted(os.listdir(tmp_path / "cut/checkpoints/mlp")) == ["1"]
    E.fit(c, tmp_path / "cut")  # the same command again
    cut = _params(tmp_path / "cut", c)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(cut), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    epochs = [
        json.loads(x)["epoch"]
        for x in (tmp_path / "cut/metrics.jsonl").read_text().splitlines()
        if json.loads(x)["router"] == "mlp"
    ]
    assert epochs == [1, 2, 3, 4]


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back(tmp_path, caplog):
    c = tiny(routers="mlp", epochs=2)
    c.cost_model.enabled = False
    E.fit(c, tmp_path)
    latest = tmp_path / "checkpoints/mlp/2"
    for f in latest.rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"\0garbage" * 4)
    data = E.load_experiment_data(c)
    splits = E.make_splits(c, data)
    task = E.build_task(c.routers.mlp, data.num_models, c.train, splits.train[0].num_prompts)
    target = T.init_states(task, splits.seeds, data.features.shape[1])
    from jaxroute.train.checkpoint import Checkpointer

    step, _ = Checkpointer(tmp_path / "checkpoints/mlp").restore(target)
    assert step == 1
    assert "unreadable" in caplog.text


def test_nan_loss_stops_with_step_named():
    losses = np.array([[0.5, 0.4, np.nan], [0.5, 0.4, 0.3]])
    with pytest.raises(FloatingPointError, match=r"step 6 \(epoch 2"):
        T.check_finite(losses, name="mlp", epoch=1, steps_per_epoch=3)


@pytest.mark.slow
def test_nan_in_training_is_caught(tmp_path):
    c = tiny(routers="mlp", epochs=2)
    c.train.learning_rate = 1e30  # diverges
    c.cost_model.enabled = False
    with pytest.raises(FloatingPointError, match="router 'mlp'"):
        E.fit(c, tmp_path)
    assert not (tmp_path / "checkpoints/mlp/2").exists()


def test_misspelt_router_name_fails():
    c = tiny(routers="mlp,eqirouter")
    with pytest.raises(ValueError, match="eqirouter"):
        E.router_names(c)


@pytest.mark.slow
@pytest.mark.parametrize(
    "change", [{"run_routers": "mlp,eqirouter"}, {"data.split": "no_such_split"}]
)
def test_config_errors_found_after_loading_the_data_leave_the_workdir_empty(tmp_path, change):
    c = tiny()
    for k, v in change.items():
        node, _, field = k.rpartition(".")
        setattr(c[node] if node else c, field, v)
    with pytest.raises(ValueError, match="eqirouter|no_such_split"):
        E.fit(c, tmp_path)
    # Only the workdir lock (an empty file, released with the process) is there.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]
    assert (tmp_path / ".lock").stat().st_size == 0


@pytest.mark.slow
def test_eight_fake_devices_give_the_same_params(tmp_path):
    """Data-parallel over 8 fake CPU devices matches one device (float tolerance)."""
    from _apps import fake_devices_env, run_python  # here: the -c code imports this module

    code = f"""
import jax, numpy as np, sys
sys.path.insert(0, {str(ROOT / "tests" / "train")!r})
from test_train import tiny, _params
from jaxroute.train import experiment as E
assert len(jax.devices()) == 8, jax.devices()
c = tiny(routers="mlp", epochs=2)
c.cost_model.enabled = False
E.fit(c, sys.argv[1])
leaves = jax.tree.leaves(_params(sys.argv[1], c))
np.save(sys.argv[2], np.concatenate([np.ravel(x) for x in leaves]))
"""
    out = tmp_path / "p8.npy"
    env = fake_devices_env(8)  # the suite's cache, eight fake devices
    proc = run_python(["-c", code, tmp_path / "w8", out], env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = tiny(routers="mlp", epochs=2)
    c.cost_model.enabled = False
    E.fit(c, tmp_path / "w1")
    one = np.concatenate([np.ravel(x) for x in jax.tree.leaves(_params(tmp_path / "w1", c))])
    np.testing.assert_allclose(np.load(out), one, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_hparams_vmap_equals_separate_runs():
    """Routers differing only in a loss weight train as one vmapped state."""
    from jaxroute.losses import equirouter_loss
    from jaxroute.models import make_model

    def objective(out, batch, rank_weight):
        where = jax.numpy.broadcast_to(batch["mask"][:, None], out.shape)
        return equirouter_loss(
            out, batch["quality"], costs=batch["cost"], rank_weight=rank_weight, where=where
        )

    task = T.Task(make_model("mlp", 3, hidden_sizes=(8,)), objective, T.make_optimizer(1e-2))
    rng = np.random.default_rng(0)
    data = {
        "x": rng.normal(size=(20, 4)).astype(np.float32),
        "quality": rng.integers(0, 2, size=(20, 3)).astype(np.float32),
        "cost": rng.uniform(size=(20, 3)).astype(np.float32),
    }
    idx, valid = T.epoch_indices(20, 8, seed=0, epoch=0)
    fn = T.compiled_epoch(task)
    weights = [0.0, 50.0]
    stacked = jax.tree.map(lambda a: np.stack([a, a]), data)
    both, _ = fn(
        T.init_states(task, [0, 0], 4, {"rank_weight": weights}),
        stacked,
        np.stack([idx, idx]),
        np.stack([valid, valid]),
    )
    for k, w in enumerate(weights):
        one, _ = fn(
            T.init_states(task, [0], 4, {"rank_weight": [w]}),
            jax.tree.map(lambda a: a[None], data),
            idx[None],
            valid[None],
        )
        for a, b in zip(
            jax.tree.leaves(both["params"]), jax.tree.leaves(one["params"]), strict=True
        ):
            np.testing.assert_allclose(np.asarray(a)[k], np.asarray(b)[0], rtol=1e-5, atol=1e-6)
    p0, p1 = (
        np.concatenate([np.ravel(x[k]) for x in jax.tree.leaves(both["params"])]) for k in (0, 1)
    )
    assert not np.allclose(p0, p1)  # the weight mattered


@pytest.mark.slow
def test_workdir_with_another_config_is_refused(tmp_path):
    c = tiny(routers="mlp", epochs=1)
    c.cost_model.enabled = False
    E.fit(c, tmp_path)
    c.train.learning_rate = 0.5
    with pytest.raises(ValueError, match="train differ"):
        E.fit(c, tmp_path)
    c.train.learning_rate = get_config("tiny").train.learning_rate
    c.eval.n_budgets = 7  # evaluation settings may change
    E.fit(c, tmp_path)


@pytest.mark.slow
def test_config_hparams_train_in_one_state_and_match_a_plain_router(tmp_path):
    """``hparams={"rank_weight": (0, 50)}``: 2 x K copies in one group; the w=50 copies
    equal the router trained with the loss's default w=50 on its own."""
    from jaxroute.configs.base import router
    from jaxroute.train import evaluation

    c = tiny(routers="plain,swept", epochs=2)
    c.cost_model.enabled = False
    kw = {"model_kwargs": {"hidden_sizes": (16,)}}
    c.routers.plain = router("mlp", "equirouter", **kw)
    c.routers.swept = router("mlp", "equirouter", hparams={"rank_weight": (0.0, 50.0)}, **kw)
    data = E.load_experiment_data(c)
    fitted = E.fit(c, tmp_path, data)
    k = len(c.seeds)
    plain, swept = fitted.groups["plain"][1], fitted.groups["swept"][1]
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(swept), strict=True):
        assert b.shape[0] == 2 * k
        np.testing.assert_allclose(np.asarray(b)[k:], np.asarray(a), rtol=2e-5, atol=2e-6)
        assert not np.allclose(np.asarray(b)[:k], np.asarray(a))  # w=0 trained differently
    restored = _params(tmp_path, c, "swept")
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(swept), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    report = evaluation.evaluate_fitted(c, fitted, data, ["plain", "swept"], tmp_path)
    assert list(report["routers"]) == ["plain", "swept[rank_weight=0]", "swept[rank_weight=50]"]
    # Parameters within 2e-5 route every test prompt alike: the same curve, exactly.
    w50, alone = report["routers"]["swept[rank_weight=50]"], report["routers"]["plain"]
    assert w50["curve"]["quality"] == pytest.approx(alone["curve"]["quality"], rel=1e-6)
    assert w50["peak"] == pytest.approx(alone["peak"], rel=1e-6)


@pytest.mark.slow
def test_validation_part_trains_logs_and_evaluates(tmp_path):
    """train.val_fraction holds a seeded part of train out: val_loss is logged each epoch
    and eval.split='val' evaluates on it (from the checkpoints)."""
    c = tiny(routers="mlp", epochs=2, seeds=(0, 1))
    c.cost_model.enabled = False
    c.train.val_fraction = 0.25
    data = E.load_experiment_data(c)
    E.fit(c, tmp_path, data)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [len(r["val_loss"]) for r in rows] == [2, 2] and np.isfinite(rows[-1]["val_loss"]).all()
    splits = E.make_splits(c, data)
    c.eval.split = "val"
    report = E.evaluate(c, tmp_path, data, output_dir=tmp_path / "val")
    assert report["dataset"]["evaluated_on"] == "val"
    assert report["dataset"]["n_evaluated"] == splits.val[0].num_prompts == 20  # 25% of 80
    c.train.val_fraction = 0.0
    with pytest.raises(ValueError, match="val_fraction"):
        E.evaluate(c, tmp_path / "other", data)


def test_metric_writer_rewind_drops_later_epochs_of_that_router_only(tmp_path):
    from jaxroute.train.workdir import MetricWriter

    w = MetricWriter(tmp_path)
    for router, epoch in [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 2)]:
        w.write(router=router, epoch=epoch)
    with w.path.open("a") as f:
        f.write('{"router": "a", "epo')  # a line cut by a kill
    w.rewind("a", 1)
    got = [(r["router"], r["epoch"]) for r in map(json.loads, w.path.read_text().splitlines())]
    assert got == [("a", 1), ("b", 1), ("b", 2)]
