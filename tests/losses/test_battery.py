"""The STYLE.md loss battery, run over every entry of ``jaxroute.losses.LOSSES``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxroute.losses import LOSSES

M = 4
# ott's unrolled Sinkhorn is slow to compile; its battery lives in test_ot.py.
NAMES = sorted(n for n in LOSSES if not n.startswith("ot_ranks"))
# Losses that are 0 on a list whose labels (and costs) all tie.
POINTWISE = {"mse", "bce", "bce_wtp", "equirouter", "equirouter_tb"}  # a pointwise term
RANKING = [n for n in NAMES if n not in POINTWISE]
SHIFT_INVARIANT = RANKING
TB_PAIRS = [
    ("pairwise_logistic", "pairwise_logistic_tb"),
    ("pairwise_hinge", "pairwise_hinge_tb"),
    ("listmle", "listmle_tb"),
    ("neuralsort", "neuralsort_tb"),
    ("softsort", "softsort_tb"),
    ("equirouter", "equirouter_tb"),
]


def _inputs(seed=0, shape=(3, M)):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    scores = jax.random.normal(k1, shape)
    labels = jax.random.bernoulli(k2, 0.5, shape).astype(jnp.float32)
    costs = jnp.round(jax.random.uniform(k3, shape, minval=1.0, maxval=4.0))
    return scores, labels, costs


def _finite(tree):
    return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree))


def _special_batch(n=1000):
    """n random lists with ties and masks; rows 0-3 are special cases.

    Row 0: all masked. Row 1: all labels and costs tied. Rows 2, 3: scores at +-1e4.
    """
    s, y, c = _inputs(4, (n, M))
    y = jnp.round(y * jnp.abs(s))  # labels in {0, 1, 2, ...} with many ties
    where = jax.random.bernoulli(jax.random.key(5), 0.85, s.shape)
    where = where.at[0].set(False).at[1:4].set(True)
    y = y.at[1].set(1.0)
    c = c.at[1].set(2.0)
    s = s.at[2].set(1e4 * jnp.sign(s[2])).at[3].set(-1e4 * jnp.sign(s[3]))
    return s, y, c, where


@pytest.mark.parametrize("name", NAMES)
def test_special_lists_and_thousand_random_lists(name):
    """All-masked and all-tied give 0 (ranking losses) and finite gradients; extreme
    scores give finite gradients; jit(vmap) over 1,000 random lists is finite."""
    loss = LOSSES[name]
    s, y, c, where = _special_batch()
    f = jax.jit(jax.vmap(jax.value_and_grad(lambda s, y, c, w: loss(s, y, costs=c, where=w))))
    value, grad = f(s, y, c, where)
    assert value.shape == (1000,)
    assert _finite(value) and _finite(grad)
    assert float(value[0]) == 0.0 and float(jnp.max(jnp.abs(grad[0]))) == 0.0
    if name not in POINTWISE:
        assert abs(float(value[1])) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_check_grads(name):
    loss = LOSSES[name]
    s, y, c = _inputs(2, (2, M))
    y = y + 0.01 * jnp.arange(M)[None, :]  # no exact ties, away from kinks
    f = jax.jit(lambda s: loss(s, y, costs=c))
    check_grads(f, (s,), order=1, modes=["rev"], eps=1e-2, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("name", NAMES)
def test_jit_eager_vmap_loop_agree(name):
    loss = LOSSES[name]
    s, y, c = _inputs(3, (3, M))
    where = jnp.array([[True] * M, [True, False, True, True], [False] * M])
    f = lambda s, y, c, w: loss(s, y, costs=c, where=w)
    np.testing.assert_allclose(jax.jit(f)(s, y, c, where), f(s, y, c, where), rtol=1e-5, atol=1e-6)
    batched = jax.jit(jax.vmap(f))(s, y, c, where)
    single = jax.jit(f)
    looped = jnp.stack([single(s[i], y[i], c[i], where[i]) for i in range(3)])
    np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", SHIFT_INVARIANT)
def test_shift_invariance(name):
    loss = LOSSES[name]
    s, y, c = _inputs(6)
    f = jax.jit(lambda s: loss(s, y, costs=c))
    np.testing.assert_allclose(f(s + 3.0), f(s), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("plain", "tb"), TB_PAIRS)
def test_tie_break_changes_loss_only_with_cost_ties(plain, tb):
    s = jnp.array([[0.3, 0.9, -0.2, 0.1]])
    c = jnp.array([[4.0, 3.0, 2.0, 1.0]])  # cost order differs from index order
    distinct = jnp.array([[1.0, 0.0, 0.5, 0.25]])
    tied = jnp.array([[1.0, 1.0, 0.0, 0.0]])
    a, b = jax.jit(LOSSES[plain]), jax.jit(LOSSES[tb])
    np.testing.assert_allclose(a(s, distinct, costs=c), b(s, distinct, costs=c), rtol=1e-6)
    assert abs(float(a(s, tied, costs=c)) - float(b(s, tied, costs=c))) > 1e-4
    # Equal labels but equal costs too: no tie-break pair, so again no change.
    c_eq = jnp.array([[1.0, 1.0, 3.0, 3.0]])
    np.testing.assert_allclose(a(s, tied, costs=c_eq), b(s, tied, costs=c_eq), rtol=1e-6)
