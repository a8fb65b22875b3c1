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
    assert n == 2_435_969  # hand count of docs/method.md §3


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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ---- matmul_dtype="bfloat16": bf16 GEMM operands, f32 accumulation (opt-in).
U = 2.0**-8  # bfloat16's unit roundoff: 8 significant bits, round to nearest


def _rounded(a):
    """``a`` rounded to bfloat16 and back to float32 (what a bf16 GEMM operand holds)."""
    return a.astype(jnp.bfloat16).astype(jnp.float32)


@pytest.mark.parametrize("a_shape", [(24, 256), (3, 8, 256)])
def test_bf16_matmul_is_the_f32_product_of_rounded_operands(a_shape):
    from jaxroute.models.equirouter import _bf16_matmul

    k, n = 256, 40
    a = jax.random.normal(jax.random.key(0), a_shape)
    b = jax.random.normal(jax.random.key(1), (k, n))
    g = jax.random.normal(jax.random.key(2), (*a_shape[:-1], n))
    hi = jax.lax.Precision.HIGHEST
    out, vjp = jax.vjp(_bf16_matmul, a, b)
    d_a, d_b = vjp(g)
    ra, rb, rg = _rounded(a), _rounded(b), _rounded(g)
    want = {
        "out": (out, jnp.dot(ra, rb, precision=hi), jnp.abs(ra) @ jnp.abs(rb)),
        "d_a": (d_a, jnp.dot(rg, rb.T, precision=hi), jnp.abs(rg) @ jnp.abs(rb).T),
        "d_b": (
            d_b,
            jnp.dot(ra.reshape(-1, k).T, rg.reshape(-1, n), precision=hi),
            jnp.abs(ra.reshape(-1, k)).T @ jnp.abs(rg.reshape(-1, n)),
        ),
    }
    for name, (got, exact, size) in want.items():
        assert got.dtype == jnp.float32, name
        # f32 accumulation of K terms: |error| <= K * 2^-24 * sum |terms| (the float32
        # summation bound); a bf16 result or bf16 accumulation would be off by ~U |value|.
        terms = a_shape[-1] if name != "d_b" else int(np.prod(a_shape[:-1]))
        bound = terms * 2.0**-24 * np.asarray(size)
        assert np.all(np.abs(np.asarray(got) - np.asarray(exact)) <= bound), name
    # The operands really were rounded: the plain f32 product differs by about U.
    plain = jnp.dot(a, b, precision=hi)
    assert float(jnp.max(jnp.abs(out - plain))) > 0.1 * U * float(jnp.max(jnp.abs(plain)))


def test_bf16_folded_matmul_is_the_f32_product_of_rounded_operands():
    """The folded head's bf16 GEMMs (``z @ P`` and its two gradient GEMMs) against an
    independent reference: ``P`` folded in f32, then f32 products of the rounded ``z``,
    ``P`` and cotangent; the fold's own gradients by autodiff of :func:`_fold_kernel`."""
    from jaxroute.models.equirouter import _fold_kernel, _folded_matmul

    b, z_dim, m, h = 16, 64, 3, 48
    keys = jax.random.split(jax.random.key(0), 6)
    z = jax.random.normal(keys[0], (b, z_dim))
    g1, g2 = (jax.random.normal(k, (m, z_dim)) for k in keys[1:3])
    w1, w3 = (0.2 * jax.random.normal(k, (z_dim, h)) for k in keys[3:5])
    g = jax.random.normal(keys[5], (b, m, h))
    out, vjp = jax.vjp(lambda *a: _folded_matmul(*a, True), z, g1, g2, w1, w3)
    grads = vjp(g)

    hi = jax.lax.Precision.HIGHEST
    p, fold_vjp = jax.vjp(lambda *a: _fold_kernel(*a).reshape(z_dim, m * h), g1, g2, w1, w3)
    rz, rp, rg = _rounded(z), _rounded(p), _rounded(g.reshape(b, m * h))
    d_p = jnp.dot(rz.T, rg, precision=hi)
    want = [jnp.dot(rz, rp, precision=hi).reshape(b, m, h), jnp.dot(rg, rp.T, precision=hi)]
    want += list(fold_vjp(d_p))  # d_g1, d_g2, d_w1, d_w3
    # Against the bf16 rounding itself (~U relative), f32 summation differences are tiny.
    for got, ref in zip([out, *grads], want, strict=True):
        scale = float(jnp.max(jnp.abs(ref)))
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("rows", [6, 7])
def test_transposed_is_the_transpose(rows):
    from jaxroute.models.equirouter import _transposed

    x = jax.random.normal(jax.random.key(0), (rows, 5)).astype(jnp.bfloat16)
    assert np.array_equal(np.asarray(jax.jit(_transposed)(x)), np.asarray(x).T)


def _tiny(fast, matmul_dtype="float32"):
    kw = dict(trunk_sizes=(64, 32), embed_dim=8, head_size=32, fast=fast)
    return EquiRouter(4, matmul_dtype=matmul_dtype, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("fast", [True, False])
def test_f32_mode_has_no_bf16_and_bf16_mode_has(fast):
    params = init_params(_tiny(fast), jax.random.key(0), 12)
    x = jnp.ones((8, 12))
    for dtype, has_bf16 in (("float32", False), ("bfloat16", True)):
        model = _tiny(fast, dtype)
        jaxpr = jax.make_jaxpr(jax.grad(lambda p, m=model: jnp.sum(m.apply(p, x))))(params)
        assert ("bf16" in str(jaxpr)) == has_bf16, dtype
        out = model.apply(params, x)
        assert out.dtype == jnp.float32


@pytest.mark.slow
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_scores_and_grads_close_to_f32(fast, seed):
    """Error budget from bf16's unit roundoff U = 2^-8: every GEMM rounds its two operands
    (<= U relative each, so <= 2U per product term; f32 accumulation adds nothing of that
    order). LayerNorm renormalises after each trunk layer, so errors add over the L GEMM
    levels on a score's path (here L = 2 trunk layers + the head's first Dense = 3): scores
    within 2U·L in relative RMS. Gradients pass each level twice (forward and backward
    GEMMs): within 4U·L in relative norm over all parameters. (Single parameters whose
    gradient cancels to near zero can show larger relative errors; the total does not.)
    """
    levels = 3
    params = _perturbed(init_params(_tiny(fast), jax.random.key(seed), 12), jax.random.key(10))
    x = jax.random.normal(jax.random.key(20 + seed), (32, 12))
    y = jax.random.uniform(jax.random.key(30 + seed), (32, 4))
    scores, grads = {}, {}
    for dtype in ("float32", "bfloat16"):
        model = _tiny(fast, dtype)

        def loss(p, model=model):
            s = model.apply(p, x)
            return jnp.mean((s - y) ** 2), s

        grads[dtype], scores[dtype] = jax.jit(jax.grad(loss, has_aux=True))(params)
    s32, s16 = np.asarray(scores["float32"]), np.asarray(scores["bfloat16"])
    rms = lambda a: float(np.sqrt(np.mean(np.square(a))))  # noqa: E731
    assert 0.0 < rms(s16 - s32) <= 2 * U * levels * rms(s32)
    flat = {k: np.concatenate([np.ravel(g) for g in jax.tree.leaves(v)]) for k, v in grads.items()}
    assert np.all(np.isfinite(flat["bfloat16"]))
    g32, g16 = flat["float32"], flat["bfloat16"]
    assert np.linalg.norm(g16 - g32) <= 4 * U * levels * np.linalg.norm(g32)


def test_matmul_dtype_from_the_router_config():
    from jaxroute.configs.base import get_config, router
    from jaxroute.models import ROUTERS

    assert get_config().routers.equirouter.model_kwargs.matmul_dtype == "float32"
    rc = router("equirouter", "equirouter", model_kwargs={"matmul_dtype": "bfloat16"})
    module = ROUTERS["equirouter"].build(M, **rc.model_kwargs)
    assert module.matmul_dtype == "bfloat16"
    with pytest.raises(ValueError, match="matmul_dtype"):
        EquiRouter(M, matmul_dtype="float16")
