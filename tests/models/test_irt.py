"""The item-response router (jaxroute/models/irt.py): its formula, its mask, what it
learns from a planted item-response world, and its router-table pair."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute.configs.base import router
from jaxroute.data import RoutingData
from jaxroute.models import irt
from jaxroute.models.knn import knn_predict


def _softplus(v):
    return np.log1p(np.exp(v))


@pytest.mark.slow
def test_logits_are_the_two_parameter_logistic_formula():
    m = irt.IRTRouter(num_models=3, num_tasks=2, hidden=5, skills=2)
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    v = m.init(jax.random.key(1), jnp.asarray(x))
    # Non-zero abilities, so every term shows.
    v = jax.tree.map(lambda a: a + 0.3 * jnp.arange(a.size).reshape(a.shape) / a.size, v)
    z, task_logits = (np.asarray(a, np.float64) for a in m.apply(v, jnp.asarray(x)))
    p = jax.tree.map(lambda w: np.asarray(w, np.float64), v["params"])
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    pre = xn @ p["trunk"]["kernel"] + p["trunk"]["bias"]
    h = 0.5 * pre * (1 + np.vectorize(math.erf)(pre / np.sqrt(2)))
    d = h @ p["difficulty"]["kernel"] + p["difficulty"]["bias"]
    a = _softplus(
        h @ p["discrimination"]["kernel"] + p["discrimination"]["bias"] + np.log(np.e - 1)
    )
    t = xn @ p["task"]["kernel"] + p["task"]["bias"]
    post = np.exp(t - t.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    u = h @ p["skills"]["kernel"] + p["skills"]["bias"]
    ability = p["ability"] + post @ p["task_ability"] + u @ p["skill_ability"]
    np.testing.assert_allclose(task_logits, t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z, a * (ability - d), rtol=1e-4, atol=1e-5)


def _fit(x, q, c, ids, rows, **kw):
    args = dict(
        num_models=q.shape[1],
        num_tasks=2,
        hidden=8,
        skills=2,
        loss="bce",
        steps=30,
        check=10,
        learning_rate=1e-2,
        weight_decay=1e-2,
        task_weight=1.0,
        val_fraction=0.0,
    )
    args.update(kw)
    return irt._fit(jax.random.key(0), *(jnp.asarray(a) for a in (x, q, c, ids, rows)), **args)


def _noise(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    q = rng.integers(0, 2, (n, 3)).astype(np.float32)
    c = rng.uniform(size=(n, 3)).astype(np.float32)
    return x, q, c, rng.integers(0, 2, n).astype(np.int32)


def _close(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=2e-4, atol=2e-6)


@pytest.mark.slow
def test_masked_padding_rows_change_nothing():
    x, q, c, ids = _noise(20)
    plain, steps = _fit(x, q, c, ids, np.ones(20, np.float32))
    assert int(steps) == 30
    perm = np.random.default_rng(1).permutation(20)[:7]
    junk = lambda a: np.concatenate([a, a[perm]])  # noqa: E731
    rows = np.concatenate([np.ones(20), np.zeros(7)]).astype(np.float32)
    padded, _ = _fit(junk(x), junk(q), junk(c), junk(ids), rows)
    _close(plain, padded)


@pytest.mark.slow
def test_early_stopping_refits_every_row_for_the_chosen_steps():
    # Labels independent of the features: a wide trunk overfits them, so the held-out
    # loss turns up before the last step and fewer steps are chosen.
    x, q, c, ids = _noise(60)
    rows = np.ones(60, np.float32)
    stopped, chosen = _fit(x, q, c, ids, rows, hidden=64, steps=200, val_fraction=0.3)
    assert 10 <= int(chosen) < 200 and int(chosen) % 10 == 0
    again, same = _fit(x, q, c, ids, rows, hidden=64, steps=int(chosen))
    assert int(same) == int(chosen)
    _close(stopped, again)


def _planted(n, seed):
    """Questions whose difficulty is linear in their features; model m's ability is m."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    difficulty = 6.0 * x[:, 0] + 1.0
    logits = np.arange(3)[None, :] - difficulty[:, None]
    q = (rng.uniform(size=(n, 3)) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    tasks = np.where(x[:, 1] > 0, "a", "b")
    return x, q, np.tile([1.0, 2.0, 4.0], (n, 1)).astype(np.float32), tasks, logits


def _bce(p, y):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@pytest.mark.slow
def test_learns_a_planted_difficulty_and_the_task():
    x, q, c, tasks, _ = _planted(1500, 0)
    tx, tq, tc, ttasks, tlogits = _planted(1000, 1)
    state = irt.fit_irt(x, q, c, tasks, hidden=16, skills=1, steps=300, learning_rate=1e-2)
    scores, costs = irt.predict_irt(state, tx)
    truth = _bce(1 / (1 + np.exp(-tlogits)), tq)
    means = _bce(np.broadcast_to(q.mean(0), tq.shape), tq)
    # The per-model means (no question information) are far worse than the truth; the
    # router gets within a tenth of the gap.
    assert means - truth > 0.1
    assert _bce(scores, tq) < truth + 0.1 * (means - truth)
    np.testing.assert_allclose(costs, np.tile([1.0, 2.0, 4.0], (1000, 1)), rtol=1e-6)
    # the task head learned the task (x[:, 1] > 0)
    v = jax.tree.map(np.asarray, state.params)["params"]["task"]
    names = np.asarray(state.task_names)
    pred = names[np.argmax(tx @ v["kernel"] + v["bias"], axis=1)]
    assert np.mean(pred == ttasks) > 0.95


def _routing_data(x, q, c, tasks):
    return RoutingData(
        quality=q,
        cost=c,
        models=["a", "b", "c"],
        tasks=tasks,
        sample_ids=[str(i) for i in range(len(q))],
        features=x,
    )


def test_table_pair_fits_from_the_config_entry_and_prices_like_knn():
    x, q, _, tasks, _ = _planted(200, 2)
    c = np.random.default_rng(3).uniform(1, 2, q.shape).astype(np.float32)
    rc = router("irt", hidden=8, skills=2, irt_steps=20, irt_check_every=5, cost_k=7)
    state = irt.irt_fit(_routing_data(x, q, c, tasks), rc)
    scores, costs = irt.irt_predict(state, x[:9], rc)
    assert scores.shape == (9, 3) and ((scores > 0) & (scores < 1)).all()
    assert irt.irt_choices(state) == {"steps": state.steps} and 5 <= state.steps <= 20
    _, expected = knn_predict(x, q, c, x[:9], k=7)
    np.testing.assert_allclose(costs, np.asarray(expected), rtol=1e-6)


def test_bad_fields_are_refused():
    x, q, c, tasks, _ = _planted(20, 4)
    with pytest.raises(ValueError, match="loss 'nope' not in"):
        irt.fit_irt(x, q, c, tasks, loss="nope")
    with pytest.raises(ValueError, match="val_fraction=1.0"):
        irt.fit_irt(x, q, c, tasks, val_fraction=1.0)
    with pytest.raises(ValueError, match="check=50, steps=40"):
        irt.fit_irt(x, q, c, tasks, steps=40, check=50)


def test_knn_weight_mixes_in_the_neighbours_mean_quality():
    x, q, c, tasks, _ = _planted(120, 5)
    kw = dict(hidden=8, skills=1, steps=20, check=10, cost_k=9)
    alone = irt.fit_irt(x, q, c, tasks, **kw)
    mixed = irt.fit_irt(x, q, c, tasks, knn_weight=0.25, **kw)
    s_alone, _ = irt.predict_irt(alone, x[:5])
    s_mixed, _ = irt.predict_irt(mixed, x[:5])
    near, _ = knn_predict(x, q, c, x[:5], k=9)
    np.testing.assert_allclose(s_mixed, 0.75 * s_alone + 0.25 * np.asarray(near), rtol=1e-5)
    with pytest.raises(ValueError, match="knn_weight must be in"):
        irt.fit_irt(x, q, c, tasks, knn_weight=1.5)
