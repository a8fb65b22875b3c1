"""Score regressors, the cost regressor and the factory."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute.models import (
    CostRegressor,
    MatrixFactorisation,
    MLPRegressor,
    count_params,
    init_params,
    make_model,
)

# Compiling an init (threefry for every parameter) dominates these tests' run time, so each
# model below is initialised once and shared.
D_SMALL, M_SMALL = 12, 5
SMALL_KWARGS = {
    "mlp": {"hidden_sizes": (16, 8), "dropout": 0.5},
    "linear": {},
    "mf": {"dim": 8},
    "equirouter": {"trunk_sizes": (16, 8), "embed_dim": 4, "head_size": 8},
    "cost": {},
}


@pytest.fixture(scope="module")
def small_models():
    out = {}
    for i, (name, kwargs) in enumerate(sorted(SMALL_KWARGS.items())):
        model = make_model(name, M_SMALL, **kwargs)
        out[name] = (model, init_params(model, jax.random.key(i), D_SMALL))
    return out


@pytest.fixture(scope="module")
def cost_params():
    """The reference-size cost regressor (D=384, M=11)."""
    return init_params(CostRegressor(11), jax.random.key(0), 384)


@pytest.mark.parametrize("name", sorted(SMALL_KWARGS))
def test_forward_shape_and_jit_matches_eager(small_models, name):
    model, params = small_models[name]
    assert model.num_models == M_SMALL
    x = jax.random.normal(jax.random.key(1), (7, D_SMALL))
    out = jax.jit(model.apply)(params, x)
    assert out.shape == (7, M_SMALL)
    assert out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    if name != "equirouter":  # EquiRouter's eager == jit is in test_models_equirouter.py
        np.testing.assert_allclose(model.apply(params, x), out, rtol=1e-5, atol=1e-6)
    shapes = jax.eval_shape(lambda k: init_params(model, k, D_SMALL), jax.random.key(0))
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(params)
    assert count_params(shapes) == count_params(params)


def _np_forward(name, p, x):
    """The module's forward pass in float64 NumPy, written from its docstring."""
    relu = lambda h: np.maximum(h, 0.0)  # noqa: E731

    def lin(layer, h):
        return h @ layer["kernel"] + (layer["bias"] if "bias" in layer else 0.0)

    if name == "linear":
        return lin(p["out"], x)
    if name == "mlp":  # deterministic: no dropout
        return lin(p["out"], relu(lin(p["hidden_1"], relu(lin(p["hidden_0"], x)))))
    if name == "mf":
        return (x @ p["prompt_proj"]["kernel"]) @ p["model_embedding"].T + p["model_bias"]
    assert name == "cost"
    h = lin(p["bottleneck_up"], lin(p["bottleneck_down"], x))
    return lin(p["out"], relu(lin(p["hidden_1"], relu(lin(p["hidden_0"], h)))))


@pytest.mark.parametrize("name", ["cost", "linear", "mf", "mlp"])
def test_forward_is_the_documented_network(small_models, name):
    model, params = small_models[name]
    # Biases start at zero: give every parameter random values so each term is exercised.
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(3)
    leaves = [rng.normal(0.0, 0.5, leaf.shape).astype(np.float32) for leaf in leaves]
    params = jax.tree_util.tree_unflatten(tree, leaves)
    x = rng.normal(size=(7, D_SMALL)).astype(np.float32)
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    want = _np_forward(name, p64, x.astype(np.float64))
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    ("activation", "fn"),
    [
        ("gelu", lambda h: 0.5 * h * (1.0 + np.vectorize(math.erf)(h / math.sqrt(2.0)))),
        (
            "gelu_tanh",
            lambda h: 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h**3))),
        ),
    ],
)
def test_mlp_activations_are_the_formulas(activation, fn):
    model = MLPRegressor(2, hidden_sizes=(3,), activation=activation)
    w0 = np.array([[1.0, -2.0, 0.5]], np.float32)
    params = {
        "params": {
            "hidden_0": {"kernel": w0, "bias": np.array([0.1, 0.0, -0.3], np.float32)},
            "out": {"kernel": np.eye(3, 2, dtype=np.float32), "bias": np.zeros(2, np.float32)},
        }
    }
    x = np.array([[-1.5], [0.0], [0.7], [2.0]], np.float32)
    h = x.astype(np.float64) @ w0 + [0.1, 0.0, -0.3]
    np.testing.assert_allclose(
        np.asarray(model.apply(params, x)), fn(h)[:, :2], rtol=1e-6, atol=1e-6
    )  # float32: at h = -4, 1 + tanh(...) cancels to ~1e-4, an absolute error ~1e-7


def test_make_model_unknown_name():
    with pytest.raises(ValueError, match="unknown model"):
        make_model("gpt", 3)


def test_make_model_passes_fields():
    model = make_model("mlp", 3, hidden_sizes=(4,), activation="gelu")
    assert isinstance(model, MLPRegressor)
    assert (model.num_models, model.hidden_sizes, model.activation) == (3, (4,), "gelu")
    shapes = jax.eval_shape(lambda k: init_params(model, k, 2), jax.random.key(0))
    assert shapes["params"]["out"]["kernel"].shape == (4, 3)


def test_mlp_dropout_and_bad_activation(small_models):
    model, params = small_models["mlp"]
    x = jnp.ones((2, D_SMALL))
    det = model.apply(params, x)
    np.testing.assert_array_equal(model.apply(params, x, deterministic=True), det)
    noisy = model.apply(params, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert noisy.shape == (2, M_SMALL) and not np.allclose(noisy, det)
    with pytest.raises(ValueError, match="activation"):
        make_model("mlp", 3, activation="tanh")


def test_mlp_init_is_xavier_with_zero_bias(small_models):
    params = small_models["mlp"][1]["params"]
    kernel = np.asarray(params["hidden_0"]["kernel"])
    assert kernel.shape == (D_SMALL, 16)
    assert 0 < np.abs(kernel).max() <= math.sqrt(6.0 / (D_SMALL + 16))
    assert not np.any(np.asarray(params["hidden_0"]["bias"]))


def test_matrix_factorisation_formula(small_models):
    model, params = small_models["mf"]
    assert isinstance(model, MatrixFactorisation)
    p = params["params"]
    assert p["model_embedding"].shape == (M_SMALL, 8) and p["model_bias"].shape == (M_SMALL,)
    assert "bias" not in p["prompt_proj"]
    assert abs(float(np.std(p["model_embedding"])) - 0.02) < 0.01
    bias = jnp.arange(float(M_SMALL))
    params = {"params": {**p, "model_bias": bias}}
    x = jax.random.normal(jax.random.key(1), (3, D_SMALL))
    expected = (x @ p["prompt_proj"]["kernel"]) @ p["model_embedding"].T + bias[None, :]
    np.testing.assert_allclose(model.apply(params, x), expected, rtol=1e-5, atol=1e-6)


def test_cost_regressor_architecture_and_init(cost_params):
    params = cost_params["params"]
    shapes = {name: v["kernel"].shape for name, v in params.items()}
    assert shapes == {
        "bottleneck_down": (384, 96),
        "bottleneck_up": (96, 384),
        "hidden_0": (384, 256),
        "hidden_1": (256, 128),
        "out": (128, 11),
    }
    for name, layer in params.items():
        assert abs(float(np.std(layer["kernel"])) - 0.01) < 0.001, name
        assert abs(float(np.mean(layer["kernel"]))) < 0.001, name
        assert not np.any(np.asarray(layer["bias"])), name


def test_cost_regressor_output_spaces(cost_params):
    x = jax.random.normal(jax.random.key(1), (3, 384))
    raw = CostRegressor(11)
    out = raw.apply(cost_params, x)
    np.testing.assert_array_equal(raw.apply(cost_params, x, method="predict_cost"), out)
    np.testing.assert_array_equal(raw.cost_to_target(jnp.array([0.5])), jnp.array([0.5]))

    logm = CostRegressor(11, log_cost=True)  # same parameter tree as the raw model
    usd = logm.apply(cost_params, x, method="predict_cost")
    np.testing.assert_allclose(usd, jnp.exp(out) - logm.log_eps, rtol=1e-6)
    cost = jnp.array([0.0, 1e-5, 3e-3, 0.03])
    target = logm.cost_to_target(cost)
    np.testing.assert_allclose(target, jnp.log(cost + 1e-6), rtol=1e-6)
    np.testing.assert_allclose(logm.target_to_cost(target), cost, rtol=1e-4, atol=1e-9)
