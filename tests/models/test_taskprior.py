"""The task-posterior router: task head, per-task statistics, blend, margin, its fields."""

import numpy as np
import pytest
from _taskprior_data import training_part

from jaxroute import data as jdata
from jaxroute.configs import base, best
from jaxroute.models import ROUTERS, fitted, knn_predict, router_spec
from jaxroute.models import taskprior as tp
from jaxroute.models.regressors import MLPRegressor
from jaxroute.models.table import field_doc
from jaxroute.models.taskprior_config import TaskPriorConfig
from jaxroute.models.taskprior_model import PromptMLP


def _two_tasks(n=40, seed=0):
    """Task a: model 0 right, model 1 wrong; task b: the reverse. Features tell them apart."""
    rng = np.random.default_rng(seed)
    tasks = np.array(["a", "b"] * (n // 2))
    x = rng.normal(0.0, 0.05, (n, 4)).astype(np.float32)
    x[tasks == "a", 0] += 1.0
    x[tasks == "b", 1] += 1.0
    q = np.where(tasks[:, None] == "a", [1.0, 0.0], [0.0, 1.0]).astype(np.float32)
    c = np.tile(np.array([[1.0, 2.0]], np.float32), (n, 1))
    c[tasks == "b"] *= 3.0
    return x, q, c, tasks


def test_posterior_recovers_tasks_and_scores_are_task_means():
    x, q, c, tasks = _two_tasks()
    state = tp.fit_task_prior(
        x, q, c, tasks, prior_strength=0.0, steps=3000, head_learning_rate=3e-2
    )
    assert state.task_names == ("a", "b")
    np.testing.assert_allclose(state.quality, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(state.cost, [[1.0, 2.0], [3.0, 6.0]])
    post = tp.task_posterior(state, x)
    np.testing.assert_array_equal(post.argmax(1), (tasks == "b").astype(int))
    assert float(post.max(1).min()) > 0.9
    scores, costs = tp.predict_task_prior(state, x)
    np.testing.assert_allclose(scores, post @ state.quality, rtol=1e-6)
    np.testing.assert_allclose(costs, post @ state.cost, rtol=1e-6)
    # The router sends each task's prompts to the model that is right on it.
    np.testing.assert_array_equal(scores.argmax(1), (tasks == "b").astype(int))


def test_shrinkage():
    x, q, c, tasks = _two_tasks()
    # One pseudo-prompt of the overall mean (0.5, 0.5) per task of 20 prompts.
    mu, _ = tp.task_statistics(q, c, (tasks == "b").astype(int), 2, 1.0)
    np.testing.assert_allclose(mu[0], [(20 + 0.5) / 21, 0.5 / 21], rtol=1e-6)
    state = tp.fit_task_prior(x, q, c, tasks)
    np.testing.assert_allclose(state.quality, mu, rtol=1e-6)


def test_fits_the_synthetic_benchmark_above_chance():
    data = jdata.synthetic(n_prompts=300, feature_dim=16, seed=0)
    train, test = jdata.split_in_domain(data, 0.5, 0)
    state = tp.fit_task_prior(train.features, train.quality, train.cost, train.tasks)
    post = tp.task_posterior(state, test.features)
    names = list(state.task_names)
    truth = np.array([names.index(t) for t in test.tasks])
    # Seven tasks: chance is about 1/7; the features make them learnable.
    assert float(np.mean(post.argmax(1) == truth)) > 0.6


def _one_task_per_prompt_signal(n=200, seed=1):
    """One task; model 0 (cost 1) is right iff feature 2 > 0.5, model 1 (cost 2) otherwise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (n, 4)).astype(np.float32)
    x[:, 0] += 3.0
    right0 = x[:, 2] > 0.5
    q = np.stack([right0, ~right0], axis=1).astype(np.float32)
    c = np.tile(np.array([[1.0, 2.0]], np.float32), (n, 1))
    return x, q, c, np.array(["t"] * n)


def test_cross_fitting_chooses_the_neighbours_when_the_task_says_nothing():
    x, q, c, tasks = _one_task_per_prompt_signal()
    state = tp.fit_task_prior(x, q, c, tasks, blend_k=5, blend_weights=(0.0, 1.0))
    tried = state.selection["lambda_cost_ratio"]
    # The flat prior reaches the best single model's quality only by routing to it (CR 1);
    # the neighbours tell the prompts apart and reach it more cheaply.
    assert tried["1.0"] == pytest.approx(1.0)
    assert tried["0.0"] < 0.9
    assert state.blend_weight == 0.0 and state.blend_k == 5 and state.cost_margin == 0.0
    scores, costs = tp.predict_task_prior(state, x[:10])
    near_q, near_c = knn_predict(x, q, c, x[:10], k=5)
    np.testing.assert_allclose(scores, np.asarray(near_q), rtol=1e-6)
    np.testing.assert_allclose(costs, np.asarray(near_c), rtol=1e-6)


def test_choices_record_what_fit_chose_and_only_when_it_chose():
    x, q, c, tasks = _two_tasks()
    spec = router_spec("taskprior")
    assert spec.fitted_choices(tp.fit_task_prior(x, q, c, tasks)) is None  # nothing chosen
    assert router_spec("knn").fitted_choices(object()) is None  # a router with no choices
    state = tp.fit_task_prior(
        x, q, c, tasks, blend_k=4, blend_weights=(0.0, 1.0), cost_margin=0.01, cv_folds=3
    )
    record = spec.fitted_choices(state)
    sel = state.selection
    assert record["blend_weight"] == state.blend_weight == sel["weight"]
    assert record["cost_margin"] == state.cost_margin == 0.01  # given, not chosen
    assert record["margin_z"] is None and record["margin_lower_bound"] is None
    assert record["temperature"] == state.temperature == 1.0 and record["task_nll"] is None
    assert record["folds"] == 3 and record["blend_k"] == state.blend_k
    assert record["lambda_cost_ratio"] == sel["lambda_cost_ratio"]
    assert sorted(record["lambda_cost_ratio"]) == ["0.0", "1.0"]


def test_fixed_blend_is_the_weighted_mean_of_prior_and_neighbours():
    x, q, c, tasks = _two_tasks()
    plain = tp.fit_task_prior(x, q, c, tasks)
    state = tp.fit_task_prior(x, q, c, tasks, blend_k=4, blend_weights=(0.25,))
    assert state.selection is None and state.blend_weight == 0.25
    prior_s, prior_c = tp.predict_task_prior(plain, x[:6])
    near_q, near_c = knn_predict(x, q, c, x[:6], k=4)
    scores, costs = tp.predict_task_prior(state, x[:6])
    np.testing.assert_allclose(scores, 0.25 * prior_s + 0.75 * np.asarray(near_q), rtol=1e-5)
    np.testing.assert_allclose(costs, 0.25 * prior_c + 0.75 * np.asarray(near_c), rtol=1e-5)


def test_cost_margin_sends_ties_to_the_cheap_model_without_losing_quality():
    # Task a: both models right, model 0 costs a quarter of model 1; task b: only model 1.
    x, _, _, tasks = _two_tasks()
    q = np.where(tasks[:, None] == "a", [1.0, 1.0], [0.0, 1.0]).astype(np.float32)
    c = np.tile(np.array([[1.0, 4.0]], np.float32), (len(q), 1))
    head = dict(steps=3000, head_learning_rate=3e-2)  # a confident task posterior
    plain = tp.fit_task_prior(x, q, c, tasks, **head)
    np.testing.assert_array_equal(tp.predict_task_prior(plain, x)[0].argmax(1), 1)
    state = tp.fit_task_prior(x, q, c, tasks, cost_margin_z=2.0, **head)
    # Quality never drops below the best single model (model 1, right everywhere) on the
    # cross-fitted predictions, so every margin of the grid passes and the largest is kept.
    assert state.cost_margin == pytest.approx(max(tp.MARGIN_GRID))
    scores, costs = tp.predict_task_prior(state, x)
    np.testing.assert_allclose(
        scores, tp.with_margin(*tp.predict_task_prior(plain, x), state.cost_margin), rtol=1e-6
    )
    np.testing.assert_array_equal(scores.argmax(1), (tasks == "b").astype(int))
    fixed = tp.fit_task_prior(x, q, c, tasks, cost_margin=0.05)
    assert fixed.cost_margin == 0.05 and fixed.selection is None


def test_blend_and_margin_arguments_are_checked():
    x, q, c, tasks = _two_tasks()
    with pytest.raises(ValueError, match="blend_weights"):
        tp.fit_task_prior(x, q, c, tasks, blend_weights=(1.5,))
    with pytest.raises(ValueError, match="cost_margin"):
        tp.fit_task_prior(x, q, c, tasks, cost_margin=-0.1)


def test_temperature_scaling_sharpens_an_under_confident_head():
    # The tasks are separable, so the briefly trained head ranks every prompt's task first
    # but with low confidence: every sharper temperature lowers the cross-fitted task
    # cross-entropy, and the smallest of the grid is chosen.
    x, q, c, tasks = _two_tasks()
    state = tp.fit_task_prior(x, q, c, tasks, calibrate_temperature=True)
    nll = state.selection["task_nll"]
    grid = sorted(tp.TEMPERATURE_GRID)
    assert [nll[str(t)] for t in grid] == sorted(nll.values())
    assert state.temperature == grid[0] == state.selection["temperature"]
    plain = tp.fit_task_prior(x, q, c, tasks)
    sharp = tp.task_posterior(state, x).max(axis=1)
    assert np.all(sharp > tp.task_posterior(plain, x).max(axis=1))


@pytest.mark.slow
def test_cross_fitting_chooses_the_mlp_when_only_a_feature_direction_tells():
    # One task (the prior is flat), and model 0 is right exactly when x[:, 2] > 0.5: a
    # per-prompt MLP learns the boundary, so the cross-fitted choice gives it weight.
    x, q, c, tasks = _one_task_per_prompt_signal()
    kw = dict(mlp_hidden=16, mlp_steps=300, mlp_learning_rate=1e-2, cv_folds=3)
    state = tp.fit_task_prior(x, q, c, tasks, mlp_weights=(0.0, 0.5), **kw)
    tried = state.selection["lambda_cost_ratio"]
    assert sorted(tried) == ["0.5+mlp0.5", "1.0+mlp0.0"]  # no neighbours: w = 1 - v
    assert tried["1.0+mlp0.0"] == pytest.approx(1.0)
    assert tried["0.5+mlp0.5"] < 0.9
    assert (state.blend_weight, state.mlp_weight) == (0.5, 0.5) and state.blend_k == 0
    # The routed score is half the flat prior, half the full-data MLP; the cost the prior's.
    plain = tp.fit_task_prior(x, q, c, tasks)
    prior_s, prior_c = tp.predict_task_prior(plain, x[:8])
    mlp = tp.fit_prompt_mlp(
        x, q, hidden=16, steps=300, learning_rate=1e-2, weight_decay=1e-2, seed=0
    )
    scores, costs = tp.predict_task_prior(state, x[:8])
    np.testing.assert_allclose(scores, 0.5 * prior_s + 0.5 * tp.mlp_predict(mlp, x[:8]), rtol=1e-5)
    np.testing.assert_allclose(costs, prior_c, rtol=1e-6)
    # The MLP alone tells the two kinds of prompt apart.
    right0 = x[:8, 2] > 0.5
    np.testing.assert_array_equal(scores.argmax(1) == 0, right0)


def test_mlp_weights_are_checked():
    x, q, c, tasks = _two_tasks()
    with pytest.raises(ValueError, match="mlp_weights"):
        tp.fit_task_prior(x, q, c, tasks, mlp_hidden=4, mlp_weights=(1.0,))
    # Prior and MLP weights that leave the neighbours a negative share.
    with pytest.raises(ValueError, match="no pair with w"):
        tp.fit_task_prior(
            x, q, c, tasks, blend_k=4, blend_weights=(0.75,), mlp_hidden=4, mlp_weights=(0.5,)
        )


# ---------------------------------------------------------------- one source of fields
FIELDS = {  # the taskprior kind's fields and defaults, as docs/method.md §4 describes them
    "steps": 300,
    "head_learning_rate": 3e-3,
    "head_weight_decay": 1e-4,
    "prior_strength": 1.0,
    "temperature": 1.0,
    "blend_k": 0,
    "blend_weights": (1.0,),
    "cost_margin": 0.0,
    "cost_margin_z": 0.0,
    "calibrate_temperature": False,
    "cv_folds": 5,
    "mlp_hidden": 0,
    "mlp_steps": 400,
    "mlp_learning_rate": 1e-3,
    "mlp_weight_decay": 1e-2,
    "mlp_weights": (0.0,),
    "irt_weights": (0.0,),
    "irt_hidden": 32,
    "irt_skills": 4,
    "irt_lr": 3e-3,
    "irt_max_steps": 400,
}


def test_the_table_and_configs_take_the_fields_from_one_structure():
    spec = ROUTERS["taskprior"]
    assert dict(spec.fields) == FIELDS
    assert set(spec.field_docs) == set(FIELDS)
    assert field_doc("blend_k") == spec.field_docs["blend_k"] != ""
    rc = base.router("taskprior")
    assert {k: rc[k] for k in FIELDS} == FIELDS and set(rc) == {"model", *FIELDS}
    # best.py states only what differs from the defaults; the rest comes from the table.
    assert all(best.BEST[k] != FIELDS[k] for k in best.BEST)
    assert len(best.BEST) == 6
    rc = best.get_config().routers.best
    assert {k: rc[k] for k in FIELDS} == {**FIELDS, **best.BEST}


def test_fit_reads_the_config_through_the_fields():
    cfg = TaskPriorConfig.from_config({"model": "taskprior", "steps": 5.0, "blend_weights": [0, 1]})
    assert cfg.steps == 5 and type(cfg.steps) is int  # cast to the default's type
    assert cfg.blend_weights == (0.0, 1.0) and cfg.cv_folds == 5  # missing: the default
    # Configs written before the kNN-in-prior and residual fields were removed still load
    # at the values that switched them off, and are refused at any other.
    old = {"knn_k": 0, "knn_strength": 1.0, "residual_loss": "", "residual_steps": 400}
    assert TaskPriorConfig.from_config(old) == TaskPriorConfig()
    with pytest.raises(ValueError, match="field 'residual_loss' = 'bce': removed"):
        TaskPriorConfig.from_config({"residual_loss": "bce"})
    with pytest.raises(ValueError, match="field 'knn_k' = 5: removed"):
        TaskPriorConfig.from_config({"knn_k": 5})
    with pytest.raises(ValueError, match="unknown fields"):
        base.router("taskprior", residual_loss="bce")


def test_the_prompt_mlp_is_the_projects_mlp():
    assert issubclass(PromptMLP, MLPRegressor)
    x, q, _, _ = _two_tasks()
    params = tp.fit_prompt_mlp(
        x, q, hidden=8, steps=0, learning_rate=1e-3, weight_decay=0.0, seed=0
    )["params"]
    assert sorted(params) == ["hidden", "out"]
    # Forward pass: normalised rows -> Dense -> tanh-GELU -> Dense -> sigmoid.
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    h = xn @ np.asarray(params["hidden"]["kernel"]) + np.asarray(params["hidden"]["bias"])
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))
    z = h @ np.asarray(params["out"]["kernel"]) + np.asarray(params["out"]["bias"])
    got = tp.mlp_predict({"params": params}, x)
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_fitted_state_round_trips_through_inert_arrays(tmp_path):
    x, q, c, tasks = _one_task_per_prompt_signal()
    rc = base.router(
        "taskprior", blend_k=5, blend_weights=(0.0, 0.5), mlp_hidden=8, mlp_weights=(0.0, 0.5)
    )
    train = training_part(x, q, c, tasks)
    spec = router_spec("taskprior")
    state = spec.fit_state(train, rc)
    assert state.train_features is not None and state.mlp is not None  # every part stored
    fitted.save_state(tmp_path, "best", 3, spec, state, rc, n_train=len(x))
    with np.load(tmp_path / "fitted" / "best" / "seed_3.npz", allow_pickle=False) as f:
        assert "train_features" in f.files and "params/params/out/kernel" in f.files
    restored, record = fitted.load_state(tmp_path, "best", 3, spec, rc)
    assert record["n_train"] == len(x) and restored.task_names == state.task_names
    assert spec.fitted_choices(restored) == spec.fitted_choices(state)
    for a, b in zip(
        spec.predict_with(state, x, rc), spec.predict_with(restored, x, rc), strict=True
    ):
        np.testing.assert_array_equal(a, b)
