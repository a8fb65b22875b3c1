"""Budget-regret and willingness-to-pay regret losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute import losses

_STATIC = ("temperature", "cost_weight", "cost_temperature", "num_budgets")
budget_regret = jax.jit(losses.budget_regret_loss, static_argnames=_STATIC)


def test_budget_regret_closed_form_and_fallback():
    s, y, c = jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0]), jnp.array([1.0, 2.0])
    p = jax.nn.softmax(jnp.array([0.0, 1.0]))
    u = jnp.array([1.0 - 0.05 * 0.5, 1.0 - 0.05])
    want = u[0] - jnp.sum(p * u)
    got = budget_regret(s, y, costs=c, budgets=jnp.array([5.0]), temperature=1.0)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Budget 1.5: only model 0 is feasible, so the router has no choice: zero regret.
    got = budget_regret(s, y, costs=c, budgets=jnp.array([1.5]), temperature=1.0)
    np.testing.assert_allclose(got, 0.0, atol=1e-7)
    # Nothing affordable: both rule and oracle fall back to the cheapest model.
    y2 = jnp.array([0.0, 1.0])
    got = budget_regret(s, y2, costs=c, budgets=jnp.array([0.5]), cost_weight=0.0)
    np.testing.assert_allclose(got, 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="costs"):
        losses.budget_regret_loss(s, y)


def test_budget_regret_prefers_cheaper_of_tied_and_soft_feasibility():
    y, c = jnp.array([1.0, 1.0, 0.0]), jnp.array([1.0, 10.0, 0.5])
    cheap = jnp.array([1.0, 0.0, -1.0])
    dear = jnp.array([0.0, 1.0, -1.0])
    assert float(budget_regret(cheap, y, costs=c)) < float(budget_regret(dear, y, costs=c))
    g = jax.grad(lambda pc: budget_regret(dear, y, costs=c, pred_costs=pc, cost_temperature=0.5))(c)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0


def test_wtp_regret_matches_reference():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    s = jax.random.normal(k1, (3, 4))
    y = jax.random.bernoulli(k2, 0.5, (3, 4)).astype(jnp.float32)
    c = jax.random.uniform(k3, (3, 4), minval=0.1, maxval=2.0)
    lam = np.array([0.1, 1.0, 5.0])
    got = losses.wtp_regret_loss(s, y, costs=c, lambdas=lam, temperature=0.3)
    s_, y_, c_ = (np.asarray(a, np.float64) for a in (s, y, c))
    c_ = c_ / c_.max()
    total = 0.0
    for b in range(3):
        for lm in lam:
            u = y_[b] - lm * c_[b]
            z = (s_[b] - lm * c_[b]) / 0.3
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            total += (u.max() - p @ u) / (1 + lm)
    np.testing.assert_allclose(got, total / 9, rtol=1e-5)
    assert float(got) >= 0.0


def test_budget_helpers():
    c = jnp.array([[1e-4, 1e-3], [5e-3, 1e-2]])
    b = losses.log_spaced_budgets(c, 3)
    np.testing.assert_allclose(b, [1e-4, 1e-3, 1e-2], rtol=1e-5)
    r = losses.sample_log_uniform_budgets(jax.random.key(0), c, 100)
    assert r.shape == (100,) and float(r.min()) >= 1e-4 * 0.999 and float(r.max()) <= 1e-2 * 1.001
