"""K routers in one compiled epoch (vmap or CPU lanes) equal K separate single runs."""

import functools

import jax
import numpy as np
import pytest

from jaxroute.losses import equirouter_loss
from jaxroute.models import make_model
from jaxroute.train import _trainer as T

pytestmark = pytest.mark.slow  # docs/testing.md

N, D, M, B = 21, 6, 3, 8  # 21 rows in batches of 8: the last batch is padded and masked


def _objective(out, batch, rank_weight=50.0):
    where = jax.numpy.broadcast_to(batch["mask"][:, None], out.shape)
    return equirouter_loss(
        out, batch["quality"], costs=batch["cost"], rank_weight=rank_weight, where=where
    )


def _task(model: str) -> T.Task:
    kwargs = {
        "mlp": {"hidden_sizes": (8,)},
        # The folded head (custom VJP) and the trunk of the full-size router, tiny.
        "equirouter": {"trunk_sizes": (8, 4), "embed_dim": 3, "head_size": 5},
    }[model]
    return T.Task(make_model(model, M, **kwargs), _objective, T.make_optimizer(1e-2))


def _data(k: int, seed: int = 0) -> dict:
    """K different synthetic tables (as K seeds' splits), ``[K, N, ...]``."""
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(k, N, D)).astype(np.float32),
        "quality": rng.integers(0, 2, size=(k, N, M)).astype(np.float32),
        "cost": rng.uniform(size=(k, N, M)).astype(np.float32),
    }


def _epochs(k: int, epoch: int):
    parts = [T.epoch_indices(N, B, seed, epoch) for seed in range(k)]
    return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])


def _train(run, state, data, epochs=2):
    losses = []
    for e in range(epochs):
        idx, valid = _epochs(data["x"].shape[0], e)
        state, loss = run(state, data, idx, valid)
        losses.append(np.asarray(loss))
    return state, np.concatenate(losses, axis=1)


def _separate(task, data, hparams, epochs=2):
    """Each router alone (K = 1, the un-vmapped epoch): params and losses, stacked."""
    run = T.compiled_epoch(task)
    params, losses = [], []
    for k in range(data["x"].shape[0]):
        hp = {name: [v[k]] for name, v in hparams.items()}
        state = T.init_states(task, [k], D, hp)
        one = {name: v[k : k + 1] for name, v in data.items()}
        parts = [T.epoch_indices(N, B, k, e) for e in range(epochs)]
        step_losses = []
        for idx, valid in parts:
            state, loss = run(state, one, idx[None], valid[None])
            step_losses.append(np.asarray(loss)[0])
        params.append(state["params"])
        losses.append(np.concatenate(step_losses))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *params), np.stack(losses)


# Agreement to 1e-6 holds for code compiled by XLA's fusion emitters (the product's). The
# suite's classic emitter at level 0 (tests/_apps.py) was measured to break it in the
# cases marked here (8e-6 relative after six steps): they run with XLA's own emitters
# (tests/conftest.py), their tolerance unchanged.
EMITTERS = pytest.mark.fusion_emitters


@pytest.mark.parametrize(
    "model,k,lanes",
    [pytest.param("equirouter", 5, 2, marks=EMITTERS), ("mlp", 3, 2), ("mlp", 2, 3), ("mlp", 4, 1)],
)
def test_lanes_equal_separate_runs(model, k, lanes):
    """Groups via lax.map (plus a remainder group), one group plus a remainder, fewer
    routers than lanes, one lane: each router's parameters and per-step losses equal its
    own run (the same single-router math)."""
    task = _task(model)
    data = _data(k)
    hparams = {"rank_weight": [0.0, 50.0, 5.0, 20.0, 1.0][:k]}  # and K seeds, K tables
    run = jax.jit(functools.partial(T.lanes_epoch, task, lanes), donate_argnums=0)
    state, losses = _train(run, T.init_states(task, range(k), D, hparams), data)
    ref_params, ref_losses = _separate(task, data, hparams)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    assert np.asarray(state["step"]).tolist() == [2 * 3] * k  # 2 epochs x 3 batches
    # The routers differ (data, seeds, weights): a swapped order would not pass.
    assert not np.allclose(losses[0], losses[1])


@pytest.mark.parametrize("strategy", ["vmap", pytest.param("lanes", marks=EMITTERS)])
def test_compiled_epoch_strategies_match(strategy):
    """Both K > 1 layouts of ``compiled_epoch`` train K routers as K separate runs."""
    task = _task("equirouter")
    data = _data(3, seed=1)
    run = T.compiled_epoch(task, strategy)
    state, losses = _train(run, T.init_states(task, range(3), D), data)
    ref_params, ref_losses = _separate(task, data, {})
    tol = {"rtol": 1e-6, "atol": 1e-7} if strategy == "lanes" else {"rtol": 1e-4, "atol": 1e-5}
    np.testing.assert_allclose(losses, ref_losses, **tol)
    for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tol)


def test_auto_strategy_follows_the_flop_threshold(monkeypatch):
    task = _task("mlp")
    data = _data(2)
    state = T.init_states(task, range(2), D)
    idx, _ = _epochs(2, 0)
    flops = T.step_flops(task, state, data, B)
    assert flops > 0
    monkeypatch.setattr(T, "LANES_MIN_FLOPS", flops)
    monkeypatch.setattr(T, "cpu_lanes", lambda: 2)
    expect = "lanes" if jax.default_backend() == "cpu" else "vmap"
    assert T.compiled_epoch(task).strategy(state, data, idx) == expect
    monkeypatch.setattr(T, "LANES_MIN_FLOPS", 2 * flops)
    assert T.compiled_epoch(_task("mlp")).strategy(state, data, idx) == "vmap"
    assert T.compiled_epoch(task).strategy(state, data, idx[:1]) == "single"
    with pytest.raises(ValueError, match="unknown strategy"):
        T.compiled_epoch(task, "loop")
