"""The calibrated decision-aware loss (BCE + the λ rule's expected regret)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute import losses


def _reference(s, y, c, lam, temperature, weight):
    """The loss written out in float64 NumPy for a batch of lists ``[B, M]``."""
    s, y, c = (np.asarray(a, np.float64) for a in (s, y, c))
    p = 1.0 / (1.0 + np.exp(-s))
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    ct = c / c.max(axis=-1).mean()
    out = []
    for b in range(s.shape[0]):
        regrets = []
        for lm in lam:
            u = y[b] - lm * ct[b]
            z = (p[b] - lm * ct[b]) / temperature
            pi = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            regrets.append((u.max() - pi @ u) / (1 + lm))
        out.append(bce[b].mean() + weight * np.mean(regrets))
    return float(np.mean(out))


@pytest.mark.slow
def test_closed_form_two_models_one_price():
    # p = (0.5, 0.5): the rule picks each model with weight softmax(-λ c̃ / T).
    s, y, c = jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[1.0, 2.0]])
    got = losses.calibrated_wtp_loss(s, y, costs=c, lambdas=jnp.array([1.0]), temperature=1.0)
    ct = np.array([0.5, 1.0])  # c / mean dearest cost (2)
    pi = np.exp(-ct) / np.exp(-ct).sum()
    u = 1.0 - ct
    want = np.log(2.0) + (u.max() - pi @ u) / 2.0
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.slow
def test_matches_reference_and_table_entry():
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    s = jax.random.normal(k1, (4, 5))
    y = jax.random.bernoulli(k2, 0.5, (4, 5)).astype(jnp.float32)
    c = jax.random.uniform(k3, (4, 5), minval=0.1, maxval=3.0)
    lam = (0.1, 1.0, 4.0)
    got = losses.calibrated_wtp_loss(
        s, y, costs=c, lambdas=jnp.array(lam), temperature=0.2, decision_weight=2.0
    )
    np.testing.assert_allclose(float(got), _reference(s, y, c, lam, 0.2, 2.0), rtol=1e-5)
    # The LOSSES entry is the same function with its defaults.
    want = _reference(s, y, c, losses.CALIBRATED_WTP_LAMBDAS, 0.05, 1.0)
    np.testing.assert_allclose(float(losses.LOSSES["bce_wtp"](s, y, costs=c)), want, rtol=1e-5)
    # decision_weight=0 is plain BCE.
    bce = losses.calibrated_wtp_loss(s, y, costs=c, decision_weight=0.0)
    np.testing.assert_allclose(float(bce), float(losses.sigmoid_bce_loss(s, y)), rtol=1e-6)
    with pytest.raises(ValueError, match="costs"):
        losses.calibrated_wtp_loss(s, y)


@pytest.mark.slow
def test_gradient_prefers_the_cheaper_of_two_equal_models_and_masks_are_safe():
    y, c = jnp.array([[1.0, 1.0]]), jnp.array([[0.1, 1.0]])
    fn = jax.jit(
        jax.grad(lambda s, w: losses.calibrated_wtp_loss(s, y, costs=c, decision_weight=w))
    )
    g_dec = fn(jnp.zeros((1, 2)), 1.0) - fn(jnp.zeros((1, 2)), 0.0)
    # The decision term raises the cheap model's logit more than the dear one's.
    assert float(g_dec[0, 0]) < float(g_dec[0, 1])
    masked = jax.grad(
        lambda s: losses.calibrated_wtp_loss(s, y, costs=c, where=jnp.zeros((1, 2), bool))
    )(jnp.zeros((1, 2)))
    assert bool(jnp.all(jnp.isfinite(masked))) and float(jnp.abs(masked).sum()) == 0.0
