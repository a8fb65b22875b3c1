"""The loss battery (docs/design.md, habits), run over every entry of ``jaxroute.losses.LOSSES``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxroute.losses import LOSSES, ot_ranks_loss

M = 4
# Everything below reads the loss table. ott's unrolled Sinkhorn is slow to compile; its
# battery lives in test_ot.py.
NAMES = sorted(n for n, spec in LOSSES.items() if spec.fn is not ot_ranks_loss)
# Losses with a pointwise term are not 0 on a list whose labels (and costs) all tie, and
# not invariant to shifting the scores; every other family is both.
POINTWISE = {n for n in NAMES if "pointwise" in LOSSES[n].kind.split("+")}
SHIFT_INVARIANT = [n for n in NAMES if n not in POINTWISE]
TB_PAIRS = [(LOSSES[n].tie_break_of, n) for n in NAMES if LOSSES[n].tie_break_of]
# Hyper-parameters that a loss derives from the whole batch unless given (decision
# losses: the cost scale and the budgets / λ grid), fixed when rows are compared.
BATCH_FIXED = {
    "cost_scale": 4.0,
    "budgets": jnp.array([1.5, 2.5, 4.0]),
    "lambdas": jnp.array([0.01, 0.1, 1.0]),
}


def test_battery_covers_the_table():
    assert len(NAMES) == len(LOSSES) - 2 and POINTWISE and len(TB_PAIRS) >= 6
    assert {LOSSES[n].kind for n in NAMES} >= {"pointwise", "pairwise", "listwise", "decision"}


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
    if name not in POINTWISE:  # all tied: 0
        assert abs(float(value[1])) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_check_grads(name):
    """Reverse-mode gradients against finite differences, in float64 at JAX's default
    tolerances. The loss is jitted: one compiled program serves every finite-difference
    point (op-by-op dispatch of the same loss costs seconds per entry)."""
    loss = LOSSES[name]
    with jax.enable_x64(True):
        s, y, c = (jnp.asarray(a, jnp.float64) for a in _inputs(2, (2, M)))
        y = y + 0.01 * jnp.arange(M, dtype=jnp.float64)[None, :]  # no ties, away from kinks
        check_grads(jax.jit(lambda s: loss(s, y, costs=c)), (s,), order=1, modes=["rev"])


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_batched_call_equals_loop_over_rows(name):
    """The batched call (sum reduction) equals the sum of per-row calls and of a vmap
    over rows; jit equals eager. Batch-derived hyper-parameters are fixed."""
    loss = LOSSES[name]
    fixed = {k: v for k, v in BATCH_FIXED.items() if k in loss.defaults}
    s, y, c = _inputs(3, (3, M))
    where = jnp.array([[True] * M, [True, False, True, True], [False] * M])

    def f(s, y, c, w):
        return loss(s, y, costs=c, where=w, reduce_fn=jnp.sum, **fixed)

    batched = jax.jit(f)(s, y, c, where)
    np.testing.assert_allclose(batched, f(s, y, c, where), rtol=1e-6)
    single = jax.jit(f)
    looped = sum(float(single(s[i], y[i], c[i], where[i])) for i in range(3))
    np.testing.assert_allclose(float(batched), looped, rtol=1e-5)
    np.testing.assert_allclose(float(jax.jit(jax.vmap(f))(s, y, c, where).sum()), looped, rtol=1e-5)
    assert abs(looped) > 1e-3  # the rows carry a loss (not a vacuous 0 == 0)


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
