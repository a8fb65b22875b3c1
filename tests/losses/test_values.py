"""Closed-form values and reference formulas for each loss family."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax

from jaxroute import losses


def _ref_pairwise(s, y, c, tie_break, tie_weight, per_list):
    """Brute-force loops over pairs (float64 NumPy)."""
    s, y = np.asarray(s, np.float64), np.asarray(y, np.float64)
    num = den = 0.0
    per = []
    for b in range(s.shape[0]):
        n_b = d_b = 0.0
        for i, j in itertools.product(range(s.shape[1]), repeat=2):
            w = 0.0
            if y[b, i] > y[b, j]:
                w = 1.0
            elif tie_break and y[b, i] == y[b, j] and c[b, i] < c[b, j]:
                w = tie_weight
            if w:
                n_b += w * np.logaddexp(0.0, -(s[b, i] - s[b, j]))
                d_b += w
        num, den = num + n_b, den + d_b
        if d_b:
            per.append(n_b / d_b)
    if per_list:
        return np.mean(per) if per else 0.0
    return num / den if den else 0.0


@pytest.mark.parametrize("tie_break", [None, "cost"])
@pytest.mark.parametrize("reduction", ["global", "per_list"])
def test_pairwise_logistic_matches_loops(tie_break, reduction):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    s = jax.random.normal(k1, (5, 4))
    y = jnp.round(2 * jax.random.uniform(k2, (5, 4)))
    c = jnp.round(jax.random.uniform(k3, (5, 4), minval=1.0, maxval=3.0))
    got = losses.pairwise_logistic_loss(
        s, y, costs=c, tie_break=tie_break, tie_weight=0.5, reduction=reduction
    )
    want = _ref_pairwise(s, y, np.asarray(c), tie_break, 0.5, reduction == "per_list")
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_pairwise_closed_form_and_errors():
    s, y = jnp.array([0.0, 0.0, 1.0]), jnp.array([1.0, 0.0, 0.0])
    want = (np.log(2.0) + np.logaddexp(0.0, 1.0)) / 2
    np.testing.assert_allclose(losses.pairwise_logistic_loss(s, y), want, rtol=1e-6)
    np.testing.assert_allclose(losses.pairwise_hinge_loss(s, y, margin=0.5), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="needs costs"):
        losses.pairwise_logistic_loss(s, y, tie_break="cost")
    with pytest.raises(ValueError, match="tie_break"):
        losses.pairwise_logistic_loss(s, y, tie_break="price")
    with pytest.raises(ValueError, match="reduction"):
        losses.pairwise_logistic_loss(s, y, reduction="sum")


def test_pointwise_and_equirouter_closed_form():
    s = jnp.array([[0.5, 1.0], [0.0, 2.0]])
    y = jnp.array([[1.0, 1.0], [0.0, 1.0]])
    where = jnp.array([[True, True], [True, False]])
    # (0.25 + 0 + 0) / 3 over the valid entries.
    np.testing.assert_allclose(losses.mse_loss(s, y, where=where), 0.25 / 3, rtol=1e-6)
    bce = np.mean([np.logaddexp(0, x) - t * x for x, t in [(0.5, 1), (1.0, 1), (0.0, 0)]])
    np.testing.assert_allclose(losses.sigmoid_bce_loss(s, y, where=where), bce, rtol=1e-6)
    c = jnp.array([[1.0, 2.0], [1.0, 2.0]])
    for tb in (None, "cost"):
        got = losses.equirouter_loss(s, y, costs=c, rank_weight=50.0, tie_break=tb)
        want = losses.mse_loss(s, y) + 50.0 * losses.pairwise_logistic_loss(
            s, y, costs=c, tie_break=tb
        )
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_softmax_loss_matches_formula_and_rax():
    k1, k2 = jax.random.split(jax.random.key(1))
    s = jax.random.normal(k1, (3, 4))
    y = jax.random.uniform(k2, (3, 4))
    logp = jax.nn.log_softmax(s, axis=-1)
    p = y / jnp.sum(y, axis=-1, keepdims=True)
    np.testing.assert_allclose(
        losses.softmax_loss(s, y), jnp.mean(-jnp.sum(p * logp, axis=-1)), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.softmax_loss(s, y),
        rax.softmax_loss(s, y, label_fn=lambda a, where: a / jnp.sum(a, -1, keepdims=True)),
        rtol=1e-5,
    )
    q = jax.nn.softmax(y / 0.5, axis=-1)
    np.testing.assert_allclose(
        losses.softmax_loss(s, y, label_temperature=0.5),
        jnp.mean(-jnp.sum(q * logp, axis=-1)),
        rtol=1e-5,
    )


def _ref_listmle(s, order):
    s = np.asarray(s, np.float64)[list(order)]
    return -sum(s[k] - np.log(np.sum(np.exp(s[k:]))) for k in range(len(s)))


def test_listmle_matches_formula_with_cost_ties_and_mask():
    s = jnp.array([0.2, -0.1, 0.7, 0.4])
    y = jnp.array([1.0, 1.0, 0.0, 0.5])
    c = jnp.array([3.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(losses.listmle_loss(s, y), _ref_listmle(s, [0, 1, 3, 2]), 1e-5)
    np.testing.assert_allclose(
        losses.listmle_loss(s, y, costs=c), _ref_listmle(s, [1, 0, 3, 2]), rtol=1e-5
    )
    np.testing.assert_allclose(losses.listmle_loss(s, y), rax.listmle_loss(s, y), rtol=1e-5)
    where = jnp.array([True, False, True, True])
    np.testing.assert_allclose(
        losses.listmle_loss(s, y, where=where), _ref_listmle(s, [0, 3, 2]), rtol=1e-5
    )


def test_weights_and_reduce_fn():
    s = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    y = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    per = losses.softmax_loss(s, y, reduce_fn=None)
    assert per.shape == (2,)
    np.testing.assert_allclose(losses.softmax_loss(s, y, reduce_fn=jnp.sum), jnp.sum(per))
    w = jnp.array([1.0, 3.0])
    np.testing.assert_allclose(
        losses.softmax_loss(s, y, weights=w), jnp.sum(w * per) / 4.0, rtol=1e-6
    )
