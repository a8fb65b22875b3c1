"""NeuralSort / SoftSort relaxed permutations and their losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute import losses

RELAX = {"neuralsort": losses.neuralsort, "softsort": losses.softsort}


def _hard(s):
    return jax.nn.one_hot(jnp.argsort(-s, axis=-1), s.shape[-1])


@pytest.mark.parametrize("name", sorted(RELAX))
def test_rows_sum_to_one_and_tau_to_zero(name):
    relax = RELAX[name]
    s = jax.random.normal(jax.random.key(0), (3, 5))
    f = jax.jit(relax, static_argnames="hard")
    p = f(s, 1.0)
    assert p.shape == (3, 5, 5)
    np.testing.assert_allclose(jnp.sum(p, axis=-1), 1.0, rtol=1e-5)
    errs = [float(jnp.max(jnp.abs(f(s, tau) - _hard(s)))) for tau in (1.0, 0.1, 1e-3)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-3


@pytest.mark.parametrize("name", sorted(RELAX))
def test_hard_straight_through(name):
    relax = jax.jit(RELAX[name], static_argnames="hard")
    s = jax.random.normal(jax.random.key(1), (2, 4))
    p = relax(s, 0.5, hard=True)
    np.testing.assert_array_equal(p, _hard(s))
    w = jax.random.normal(jax.random.key(2), (2, 4, 4))
    g_hard = jax.grad(lambda s: jnp.sum(w * relax(s, 0.5, hard=True)))(s)
    g_soft = jax.grad(lambda s: jnp.sum(w * relax(s, 0.5)))(s)
    assert bool(jnp.all(jnp.isfinite(g_hard)))
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-5, atol=1e-6)


def test_neuralsort_formula():
    s = jnp.array([0.3, -1.0, 2.0])
    a = jnp.abs(s[:, None] - s[None, :]).sum(-1)
    rows = [jax.nn.softmax(((3 + 1 - 2 * i) * s - a) / 0.7) for i in (1, 2, 3)]
    np.testing.assert_allclose(losses.neuralsort(s, 0.7), jnp.stack(rows), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(RELAX))
def test_masked_models_end_last(name):
    s = jnp.array([5.0, 0.0, 1.0, -2.0])
    where = jnp.array([False, True, True, False])
    p = RELAX[name](s, 0.01, where=where)
    np.testing.assert_allclose(jnp.sum(p, axis=-1), 1.0, rtol=1e-5)
    # rows 0, 1: the valid models (2 then 1); rows 2, 3: the masked ones, no weight before.
    np.testing.assert_allclose(p[0], [0, 0, 1, 0], atol=1e-4)
    np.testing.assert_allclose(p[1], [0, 1, 0, 0], atol=1e-4)
    np.testing.assert_allclose(p[2:, :][:, 1:3], 0.0)


@pytest.mark.parametrize("loss", [losses.neuralsort_loss, losses.softsort_loss])
def test_sort_losses_prefer_the_true_order(loss):
    y = jnp.array([1.0, 0.0, 0.5])
    good, bad = jnp.array([2.0, 0.0, 1.0]), jnp.array([0.0, 2.0, 1.0])
    assert float(loss(good, y)) < float(loss(bad, y))
    # Cost tie-break: among the tied pair, the cheaper (index 1) must come first.
    y2, c = jnp.array([1.0, 1.0, 0.0]), jnp.array([2.0, 1.0, 1.0])
    cheap_first, dear_first = jnp.array([1.0, 2.0, 0.0]), jnp.array([2.0, 1.0, 0.0])
    assert float(loss(cheap_first, y2, costs=c)) < float(loss(dear_first, y2, costs=c))
    # Without costs the tied pair's order is not penalised.
    np.testing.assert_allclose(loss(cheap_first, y2), loss(dear_first, y2), rtol=1e-5)
