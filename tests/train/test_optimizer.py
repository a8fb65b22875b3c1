"""The optimiser options (known answers) and the evaluated checkpoint (``eval.checkpoint``)."""

import json

import jax
import numpy as np
import pytest

from jaxroute.configs.base import get_config
from jaxroute.train import _trainer as T
from jaxroute.train import experiment as E
from jaxroute.train import groups


def _updates(tx, grads, steps, params=None):
    """The first ``steps`` updates of ``tx`` for a constant gradient ``grads``."""
    params = {"w": jax.numpy.asarray([2.0, -1.0])} if params is None else params
    state, out = tx.init(params), []
    for _ in range(steps):
        upd, state = tx.update(grads, state, params)
        out.append(np.asarray(upd["w"]))
    return np.stack(out)


ONES = {"w": jax.numpy.asarray([1.0, 1.0])}


def test_optimizers_known_answers():
    """Adam's step on a constant gradient is -lr (m̂/√v̂ = 1; to 3e-5: float32 bias
    correction, 1 - 0.999 has 4 digits); SGD uses momentum 0.9 (v_t = g + 0.9 v_{t-1},
    step -lr·v_t); AdamW adds -lr·wd·w; Adam or SGD with weight decay is refused."""
    lr = 0.1
    adam = _updates(T.make_optimizer(lr, optimizer="adam"), ONES, 3)
    np.testing.assert_allclose(adam, np.full((3, 2), -lr), rtol=3e-5)
    sgd = _updates(T.make_optimizer(lr, optimizer="sgd"), ONES, 3)
    np.testing.assert_allclose(sgd[:, 0], [-0.1, -0.19, -0.271], rtol=1e-6)
    adamw = _updates(T.make_optimizer(lr, optimizer="adamw", weight_decay=0.5), ONES, 1)
    np.testing.assert_allclose(adamw[0], [-lr * (1 + 0.5 * 2.0), -lr * (1 - 0.5)], rtol=3e-5)
    for name in ("adam", "sgd"):
        with pytest.raises(ValueError, match="no weight decay; use adamw"):
            T.make_optimizer(lr, optimizer=name, weight_decay=0.01)
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        T.make_optimizer(lr, optimizer="adamx")


MOMENTUM = np.array([1.0, 1.9, 2.71, 3.439, 4.0951, 4.68559])  # SGD's v_t, constant g = 1


def _rates(tx, steps):
    """The learning rate of each step: SGD's step is -lr_t · v_t."""
    return -_updates(tx, ONES, steps)[:, 0] / MOMENTUM[:steps]


def test_schedules_and_warmup_known_answers():
    """Cosine with 2 warm-up steps over 6: 0, lr/2, lr, then lr·(1 + cos(π(t-2)/4))/2;
    constant with 2 warm-up steps: 0, lr/2, then lr; cosine without warm-up starts at lr."""
    lr, c = 0.1, np.cos(np.pi / 4)
    sgd = {"optimizer": "sgd"}
    cos = T.make_optimizer(lr, schedule="cosine", warmup_steps=2, total_steps=6, **sgd)
    want = [0.0, 0.05, 0.1, 0.1 * (1 + c) / 2, 0.05, 0.1 * (1 - c) / 2]
    np.testing.assert_allclose(_rates(cos, 6), want, rtol=1e-6, atol=1e-9)
    const = T.make_optimizer(lr, schedule="constant", warmup_steps=2, **sgd)
    np.testing.assert_allclose(_rates(const, 4), [0, 0.05, 0.1, 0.1], rtol=1e-6, atol=1e-9)
    cos0 = T.make_optimizer(lr, schedule="cosine", total_steps=4, **sgd)
    np.testing.assert_allclose(_rates(cos0, 3), [0.1, 0.1 * (1 + c) / 2, 0.05], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown schedule 'cosin'"):
        T.make_optimizer(lr, schedule="cosin")


def test_gradient_clipping_known_answer():
    """A gradient of global norm 5 clipped to 1 is scaled by 1/5 before SGD's step; a
    clip above the norm changes nothing."""
    g = {"w": jax.numpy.asarray([3.0, 4.0])}
    clipped = _updates(T.make_optimizer(0.1, optimizer="sgd", grad_clip=1.0), g, 1)
    np.testing.assert_allclose(clipped[0], [-0.1 * 0.6, -0.1 * 0.8], rtol=1e-6)
    loose = _updates(T.make_optimizer(0.1, optimizer="sgd", grad_clip=10.0), g, 1)
    np.testing.assert_allclose(loose[0], [-0.3, -0.4], rtol=1e-6)


def test_best_epoch_reads_the_lowest_mean_validation_loss(tmp_path):
    from jaxroute.train.workdir import MetricWriter, best_epoch

    w = MetricWriter(tmp_path)
    for epoch, val in [(1, [0.5, 0.7]), (2, [0.2, 0.4]), (3, [0.1, 0.6]), (4, [0.0, 0.1])]:
        w.write(router="r", epoch=epoch, val_loss=val)
        w.write(router="other", epoch=epoch, val_loss=[9 - epoch])
    assert best_epoch(tmp_path, "r", 3) == 2  # means 0.6, 0.3, 0.35 (epoch 4 not trained)
    assert best_epoch(tmp_path, "r", 4) == 4
    with pytest.raises(ValueError, match="val_fraction > 0"):
        best_epoch(tmp_path, "missing", 3)


@pytest.mark.slow
def test_eval_checkpoint_best_evaluates_that_epochs_parameters(tmp_path):
    """eval.checkpoint='best': train's in-memory parameters, evaluate's and route's (both
    through trained_group) are the checkpoint of the epoch of lowest validation loss."""
    c = get_config("tiny")
    c.run_routers, c.train.epochs, c.seeds = "mlp", 3, (0, 1)
    c.cost_model.enabled = False
    c.train.val_fraction = 0.25
    c.train.learning_rate = 0.3  # large steps: the validation loss need not fall each epoch
    c.train.keep_checkpoints = 1
    c.eval.checkpoint = "best"
    data = E.load_experiment_data(c)
    fitted = E.fit(c, tmp_path, data)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    means = [float(np.mean(r["val_loss"])) for r in rows if r["router"] == "mlp"]
    best = int(np.argmin(means)) + 1
    assert best < 3  # these settings overshoot in epoch 3: the best is not the last
    assert groups.evaluated_epoch("mlp", c.routers.mlp, c, tmp_path) == best
    task = fitted.groups["mlp"][0]
    splits = E.make_splits(c, data)
    at_best = groups.restore_params(
        "mlp", task, splits.seeds, data.features.shape[1], tmp_path, epochs=best
    )
    for a, b in zip(
        jax.tree.leaves(fitted.groups["mlp"][1]), jax.tree.leaves(at_best), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    train = splits.train[0]
    shape = (splits.seeds, data.features.shape[1], data.num_models, train.num_prompts)
    _, restored = E.trained_group("mlp", c.routers.mlp, c, *shape, tmp_path)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(at_best), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c.train.val_fraction = 0.0
    with pytest.raises(ValueError, match="val_fraction > 0"):
        E.fit(c, tmp_path / "none", data)
