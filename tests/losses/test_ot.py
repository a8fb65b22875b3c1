"""ot_ranks_loss: the battery in few compiles (ott's unrolled Sinkhorn compiles slowly)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute.losses import ot_ranks_loss
from jaxroute.losses._ot import label_ranks

pytest.importorskip("ott")

M = 4


def test_label_ranks_average_ties_cost_break_and_mask():
    y = jnp.array([1.0, 0.0, 1.0, 0.5])
    where = jnp.array([True, True, True, False])
    # masked model takes rank 0; valid: 0.0 -> 1, tied 1.0s -> (2 + 3) / 2
    np.testing.assert_allclose(label_ranks(y, where)[:3], [2.5, 1.0, 2.5])
    c = jnp.array([2.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(label_ranks(y, where, c)[:3], [2.0, 1.0, 3.0])


@pytest.mark.slow
def test_ot_battery():
    tb = True  # the cost path; the label-only path shares all other code
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    n = 64
    s = jax.random.normal(k1, (n, M))
    y = jnp.round(2 * jax.random.uniform(k2, (n, M)))
    c = jnp.round(jax.random.uniform(k3, (n, M), minval=1.0, maxval=4.0))
    where = jnp.ones((n, M), bool).at[0].set(False).at[5, 1].set(False)
    y = y.at[1].set(1.0).at[4].set(jnp.array([0.0, 1.0, 2.0, 3.0]))
    c = c.at[1].set(2.0)
    s = s.at[2].set(1e4 * jnp.sign(s[2])).at[3].set(-1e4 * jnp.sign(s[3]))
    s = s.at[4].set(jnp.array([0.0, 1.0, 2.0, 3.0]))  # perfectly ordered list

    def loss(s, y, c, w):
        return ot_ranks_loss(s, y, costs=c if tb else None, where=w, max_iterations=50)

    f = jax.jit(jax.vmap(jax.value_and_grad(loss)))
    value, grad = f(s, y, c, where)
    assert bool(jnp.all(jnp.isfinite(value))) and bool(jnp.all(jnp.isfinite(grad)))
    assert float(value[0]) == 0.0 and float(jnp.max(jnp.abs(grad[0]))) == 0.0
    assert float(value[1]) == 0.0  # all tied
    assert float(value[4]) < 0.01  # right order: near-zero loss
    # Reversed order of list 4 costs more; shifting every score changes nothing.
    shifted, _ = f(s + 3.0, y, c, where)
    np.testing.assert_allclose(shifted, value, rtol=1e-3, atol=1e-5)
    rev, _ = f(s.at[4].set(-s[4]), y, c, where)
    assert float(rev[4]) > 0.1
    # Per-list gradients agree with central finite differences along one direction.
    d = jax.random.normal(jax.random.key(1), s.shape).at[2:4].set(0.0)
    up, _ = f(s + 1e-2 * d, y, c, where)
    down, _ = f(s - 1e-2 * d, y, c, where)
    np.testing.assert_allclose(jnp.sum(grad * d, axis=-1), (up - down) / 2e-2, rtol=5e-2, atol=2e-3)


def test_tie_break_changes_only_with_cost_ties():
    s = jnp.array([0.3, 0.9, -0.2, 0.1])
    c = jnp.array([4.0, 3.0, 2.0, 1.0])
    tied = jnp.array([1.0, 1.0, 0.0, 0.0])
    distinct = jnp.array([1.0, 0.0, 0.5, 0.25])
    f = jax.jit(
        lambda y, c, tb: ot_ranks_loss(s, y, costs=c if tb else None, max_iterations=50),
        static_argnums=2,
    )
    np.testing.assert_allclose(f(distinct, c, True), f(distinct, c, False), rtol=1e-6)
    assert abs(float(f(tied, c, True)) - float(f(tied, c, False))) > 1e-4
