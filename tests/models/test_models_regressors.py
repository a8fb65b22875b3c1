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

SMALL_KWARGS = {
    "mlp": {"hidden_sizes": (16, 8)},
    "linear": {},
    "mf": {"dim": 8},
    "equirouter": {"trunk_sizes": (16, 8), "embed_dim": 4, "head_size": 8},
    "cost": {},
}


@pytest.mark.parametrize("name", sorted(SMALL_KWARGS))
def test_forward_shape_and_jit_matches_eager(name):
    model = make_model(name, 5, **SMALL_KWARGS[name])
    params = init_params(model, jax.random.key(0), 12)
    x = jax.random.normal(jax.random.key(1), (7, 12))
    eager = model.apply(params, x)
    assert eager.shape == (7, 5)
    assert eager.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(eager)))
    np.testing.assert_allclose(jax.jit(model.apply)(params, x), eager, rtol=1e-5, atol=1e-6)
    shapes = jax.eval_shape(lambda k: init_params(model, k, 12), jax.random.key(0))
    assert count_params(shapes) == count_params(params)


def test_make_model_unknown_name():
    with pytest.raises(ValueError, match="unknown model"):
        make_model("gpt", 3)


def test_num_models_is_a_field():
    model = make_model("mlp", 3, hidden_sizes=(4,), activation="gelu")
    assert isinstance(model, MLPRegressor) and model.num_models == 3
    params = init_params(model, jax.random.key(0), 2)
    assert params["params"]["out"]["kernel"].shape == (4, 3)


def test_mlp_dropout_and_bad_activation():
    model = MLPRegressor(3, hidden_sizes=(64,), dropout=0.5)
    params = init_params(model, jax.random.key(0), 4)
    x = jnp.ones((2, 4))
    det = model.apply(params, x)
    np.testing.assert_array_equal(model.apply(params, x, deterministic=True), det)
    noisy = model.apply(params, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert noisy.shape == (2, 3) and not np.allclose(noisy, det)
    with pytest.raises(ValueError, match="activation"):
        init_params(MLPRegressor(3, activation="tanh"), jax.random.key(0), 4)


def test_mlp_init_is_xavier_with_zero_bias():
    params = init_params(MLPRegressor(3, hidden_sizes=(256,)), jax.random.key(0), 128)["params"]
    kernel = np.asarray(params["hidden_0"]["kernel"])
    assert np.abs(kernel).max() <= math.sqrt(6.0 / (128 + 256))
    assert not np.any(np.asarray(params["hidden_0"]["bias"]))


def test_matrix_factorisation_formula():
    model = MatrixFactorisation(4, dim=6)
    params = init_params(model, jax.random.key(0), 5)
    p = params["params"]
    assert p["model_embedding"].shape == (4, 6) and p["model_bias"].shape == (4,)
    assert "bias" not in p["prompt_proj"]
    bias = jnp.arange(4.0)
    params = {"params": {**p, "model_bias": bias}}
    x = jax.random.normal(jax.random.key(1), (3, 5))
    expected = (x @ p["prompt_proj"]["kernel"]) @ p["model_embedding"].T + bias[None, :]
    np.testing.assert_allclose(model.apply(params, x), expected, rtol=1e-5, atol=1e-6)


def test_cost_regressor_architecture_and_init():
    params = init_params(CostRegressor(11), jax.random.key(0), 384)["params"]
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
        assert not np.any(np.asarray(layer["bias"])), name


def test_cost_regressor_output_spaces():
    x = jax.random.normal(jax.random.key(1), (3, 8))
    raw = CostRegressor(2)
    params = init_params(raw, jax.random.key(0), 8)
    out = raw.apply(params, x)
    np.testing.assert_array_equal(raw.apply(params, x, method="predict_cost"), out)
    np.testing.assert_array_equal(raw.cost_to_target(jnp.array([0.5])), jnp.array([0.5]))

    logm = CostRegressor(2, log_cost=True)
    out = logm.apply(params, x)  # same architecture, so the same parameters fit
    usd = logm.apply(params, x, method="predict_cost")
    np.testing.assert_allclose(usd, jnp.exp(out) - logm.log_eps, rtol=1e-6)
    cost = jnp.array([0.0, 1e-5, 3e-3, 0.03])
    target = logm.cost_to_target(cost)
    np.testing.assert_allclose(target, jnp.log(cost + 1e-6), rtol=1e-6)
    np.testing.assert_allclose(logm.target_to_cost(target), cost, rtol=1e-4, atol=1e-9)
