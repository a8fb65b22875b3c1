"""The task-posterior router: task head, per-task statistics, kNN blend."""

import numpy as np
import pytest

from jaxroute import data as jdata
from jaxroute.models import knn_predict
from jaxroute.models import taskprior as tp


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
    state = tp.fit_task_prior(x, q, c, tasks, prior_strength=0.0, steps=3000, learning_rate=3e-2)
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


def test_shrinkage_and_knn_blend():
    x, q, c, tasks = _two_tasks()
    # One pseudo-prompt of the overall mean (0.5, 0.5) per task of 20 prompts.
    mu, _ = tp.task_statistics(q, c, (tasks == "b").astype(int), 2, 1.0)
    np.testing.assert_allclose(mu[0], [(20 + 0.5) / 21, 0.5 / 21], rtol=1e-6)
    state = tp.fit_task_prior(x, q, c, tasks, knn_k=5, knn_strength=2.0)
    prior = tp.task_posterior(state, x[:6]) @ state.quality
    near, _ = knn_predict(x, q, c, x[:6], k=5)
    scores, _ = tp.predict_task_prior(state, x[:6])
    np.testing.assert_allclose(scores, (np.asarray(near) + 2.0 * prior) / 3.0, rtol=1e-5)


def test_fits_the_synthetic_benchmark_above_chance():
    data = jdata.synthetic(n_prompts=300, feature_dim=16, seed=0)
    train, test = jdata.split_in_domain(data, 0.5, 0)
    state = tp.fit_task_prior(train.features, train.quality, train.cost, train.tasks)
    post = tp.task_posterior(state, test.features)
    names = list(state.task_names)
    truth = np.array([names.index(t) for t in test.tasks])
    # Seven tasks: chance is about 1/7; the features make them learnable.
    assert float(np.mean(post.argmax(1) == truth)) > 0.6


def test_residual_learns_a_per_prompt_signal_inside_a_task():
    # One task; model 0 is right when feature 2 is positive, model 1 otherwise. The task
    # prior alone cannot tell the prompts apart; the residual can.
    rng = np.random.default_rng(1)
    n = 200
    x = rng.normal(0.0, 1.0, (n, 4)).astype(np.float32)
    x[:, 0] += 3.0
    right0 = x[:, 2] > 0
    q = np.stack([right0, ~right0], axis=1).astype(np.float32)
    c = np.tile(np.array([[1.0, 1.0]], np.float32), (n, 1))
    tasks = np.array(["t"] * n)
    plain = tp.fit_task_prior(x, q, c, tasks)
    flat, _ = tp.predict_task_prior(plain, x)
    np.testing.assert_allclose(flat, np.tile(q.mean(0, keepdims=True), (n, 1)), atol=1e-6)
    for loss in ("bce", "wtp_regret"):
        state = tp.fit_task_prior(x, q, c, tasks, residual_loss=loss, residual_l2=1e-3)
        scores, _ = tp.predict_task_prior(state, x)
        assert float(np.mean((scores[:, 0] > scores[:, 1]) == right0)) > 0.9, loss
    with pytest.raises(ValueError, match="residual_loss"):
        tp.fit_task_prior(x, q, c, tasks, residual_loss="no_such_loss")


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
    from jaxroute.models import router_spec

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
    head = dict(steps=3000, learning_rate=3e-2)  # a confident task posterior
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
    np.testing.assert_allclose(scores, 0.5 * prior_s + 0.5 * tp._mlp_predict(mlp, x[:8]), rtol=1e-5)
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
