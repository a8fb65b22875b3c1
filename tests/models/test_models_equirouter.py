"""EquiRouter: parameter count, initialisation, fast path == plain path."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute.models import EquiRouter, count_params, init_params

D, M = 384, 11


@pytest.fixture(scope="module")
def full_params():
    """Variables of the reference-size EquiRouter (D=384, M=11)."""
    return init_params(EquiRouter(M), jax.random.key(0), D)


def test_parameter_count(full_params):
    n = count_params(full_params)
    assert abs(n - 2.44e6) / 2.44e6 < 0.01, n
    assert n == 2_435_969  # hand count of METHOD.md §3


def test_parameter_count_abstract_matches():
    shapes = jax.eval_shape(lambda k: init_params(EquiRouter(M), k, D), jax.random.key(0))
    assert count_params(shapes) == 2_435_969


def test_param_tree_does_not_depend_on_fast(full_params):
    plain_model = EquiRouter(M, fast=False)
    plain = jax.eval_shape(lambda k: init_params(plain_model, k, D), jax.random.key(0))
    assert jax.tree_util.tree_structure(plain) == jax.tree_util.tree_structure(full_params)
    same_shapes = jax.tree_util.tree_map(lambda a, b: a.shape == b.shape, plain, full_params)
    assert all(jax.tree_util.tree_leaves(same_shapes))


def test_init_statistics(full_params):
    p = full_params["params"]
    emb = np.asarray(p["model_embedding"])
    assert emb.shape == (M, 128)
    assert abs(emb.std() - 0.02) < 0.002
    assert abs(emb.mean()) < 0.002
    dense_names = [n for n, v in p.items() if isinstance(v, dict) and "kernel" in v]
    assert sorted(dense_names) == sorted(
        ["trunk_dense_0", "trunk_dense_1", "trunk_dense_2", "film", "model_proj"]
        + ["head_in", "head_out"]
    )
    for name in dense_names:
        kernel = np.asarray(p[name]["kernel"])
        fan_in, fan_out = kernel.shape
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(kernel).max() <= limit, name
        assert np.abs(kernel).max() > 0.9 * limit, name  # uniform, not something narrower
        np.testing.assert_allclose(kernel.std(), limit / math.sqrt(3.0), rtol=0.2)
        assert not np.any(np.asarray(p[name]["bias"])), name
    for name in ["trunk_ln_0", "trunk_ln_1", "trunk_ln_2", "head_ln"]:
        assert np.all(np.asarray(p[name]["scale"]) == 1.0)
        assert not np.any(np.asarray(p[name]["bias"]))
    assert p["head_in"]["kernel"].shape == (2048, 512)
    assert p["film"]["kernel"].shape == (128, 1024)


def _perturbed(params, key):
    """Random non-trivial values everywhere (zero biases and unit LN scales hide bugs)."""
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [
        leaf + 0.05 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree_util.tree_unflatten(tree, leaves)


def test_fast_equals_plain_forward_and_grad(full_params):
    params = _perturbed(full_params, jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (16, D))
    y = jax.random.uniform(jax.random.key(3), (16, M))
    out, grads, flops = {}, {}, {}
    for fast in (True, False):
        model = EquiRouter(M, fast=fast)

        def loss(p, model=model):
            scores = model.apply(p, x)
            return jnp.mean((scores - y) ** 2), scores

        step = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(params).compile()
        cost = step.cost_analysis()
        flops[fast] = (cost[0] if isinstance(cost, list) else cost)["flops"]
        (_, out[fast]), grads[fast] = step(params)
    # The head's first Dense dominates; the fast path does about half of its work.
    assert flops[True] < 0.65 * flops[False], flops
    assert out[True].shape == (16, M)
    np.testing.assert_allclose(out[True], out[False], rtol=1e-4, atol=1e-5)
    for g_fast, g_plain in zip(
        jax.tree_util.tree_leaves(grads[True]), jax.tree_util.tree_leaves(grads[False]), strict=True
    ):
        scale = float(jnp.max(jnp.abs(g_plain)))
        np.testing.assert_allclose(g_fast, g_plain, rtol=1e-4, atol=1e-4 * scale + 1e-7)


def test_small_config_jit_eager_vmap():
    model = EquiRouter(4, trunk_sizes=(16, 8), embed_dim=4, head_size=8)
    params = _perturbed(init_params(model, jax.random.key(0), 6), jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (5, 6))
    eager = model.apply(params, x)
    np.testing.assert_allclose(jax.jit(model.apply)(params, x), eager, rtol=1e-5, atol=1e-6)
    # vmap over a stack of parameter sets (several routers at once) equals a loop.
    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2.0 * a]), params)
    doubled = jax.tree_util.tree_map(lambda a: 2.0 * a, params)
    both = jax.jit(jax.vmap(model.apply, in_axes=(0, None)))(stacked, x)
    np.testing.assert_allclose(both[0], eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both[1], jax.jit(model.apply)(doubled, x), rtol=1e-5, atol=1e-6)


def test_rejects_non_matrix_input():
    model = EquiRouter(2, trunk_sizes=(8,), embed_dim=4, head_size=4)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        model.init(jax.random.key(0), jnp.zeros((2, 3, 4)))
