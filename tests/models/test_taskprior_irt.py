"""The item-response model blended into the taskprior router (``irt_weights``): the mix,
the noise rule that chooses its weight, and the fitted router with and without it."""

import numpy as np
import pytest
from _taskprior_data import training_part

from jaxroute.configs import base
from jaxroute.models import fitted, router_spec, selection
from jaxroute.models import irt as irt_mod
from jaxroute.models import taskprior as tp
from jaxroute.models.taskprior_blend import with_irt


def _half_readable(n=300, seed=0):
    """Model 0 (cost 1) is right exactly on the even prompts; model 1 (cost 3) on a
    random 80%, independent of the prompt. The best single model is model 1."""
    rng = np.random.default_rng(seed)
    even = np.arange(n) % 2 == 0
    q = np.stack([even, rng.random(n) < 0.8], axis=1).astype(np.float32)
    c = np.tile(np.array([[1.0, 3.0]], np.float32), (n, 1))
    return even, q, c


def test_the_mix_is_the_weighted_mean_and_weight_zero_is_the_scores_themselves():
    s = np.array([[0.8, 0.4], [0.1, 0.3]], np.float32)
    p = np.array([[0.2, 0.6], [0.9, 0.5]], np.float32)
    assert with_irt(s, p, 0.0) is s
    np.testing.assert_allclose(with_irt(s, p, 0.25), [[0.65, 0.45], [0.3, 0.35]], rtol=1e-6)
    assert with_irt(s, p, 0.25).dtype == np.float32


def test_a_weight_that_reads_every_prompt_wins_every_resample():
    even, q, c = _half_readable()
    flat = np.tile(np.array([[0.5, 0.8]], np.float32), (len(q), 1))
    reader = np.stack([np.where(even, 0.975, 0.025), np.full(len(q), 0.8)], 1).astype(np.float32)
    u, record = selection.choose_irt_weight(flat, c, reader, q, c, 1, (0.0, 0.25, 0.5), 0)
    # The flat scores reach model 1's quality only by sending it everything (CR 1); with
    # the reader the even prompts go to model 0: cost (1 + 3) / 2 of 3.
    cr = record["irt_lambda_cost_ratio"]
    assert cr["0.0"] == 1.0 and cr["0.5"] == pytest.approx(2.0 / 3.0)
    assert record["irt_win_share"] == {"0.25": 1.0, "0.5": 1.0}
    assert record["irt_resamples"] == selection.IRT_RESAMPLES
    assert u == min((0.25, 0.5), key=lambda w: (cr[str(w)], w))


def test_a_weight_within_the_noise_resolves_to_the_least():
    even, q, c = _half_readable()
    flat = np.tile(np.array([[0.5, 0.8]], np.float32), (len(q), 1))
    # The "reader" is right on 8 prompts and wrong on 4: a lower CR on all prompts, but
    # not on 95% of the resamples.
    noisy = flat.copy()
    noisy[np.flatnonzero(even)[:8], 0] = 0.79
    noisy[np.flatnonzero(~even)[:4], 0] = 0.79
    u, record = selection.choose_irt_weight(flat, c, noisy, q, c, 1, (0.0, 0.5), 0)
    cr = record["irt_lambda_cost_ratio"]
    assert cr["0.5"] < cr["0.0"] == 1.0
    assert record["irt_win_share"]["0.5"] < selection.IRT_WIN_SHARE
    assert u == 0.0
    # Equal scores never win: the least weight again.
    u, record = selection.choose_irt_weight(flat, c, flat, q, c, 1, (0.0, 0.5), 0)
    assert u == 0.0 and record["irt_win_share"] == {"0.5": 0.0}
    # One candidate: no resampling, that weight.
    u, record = selection.choose_irt_weight(flat, c, noisy, q, c, 1, (0.25,), 0)
    assert u == 0.25 and record["irt_win_share"] == {} and record["irt_resamples"] == 0


def test_irt_weights_are_checked():
    x = np.eye(4, dtype=np.float32)
    q = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], np.float32)
    with pytest.raises(ValueError, match="irt_weights"):
        tp.fit_task_prior(x, q, q, np.array(["a"] * 4), irt_weights=(0.0, 1.5))
    with pytest.raises(ValueError, match="irt_weights"):
        tp.fit_task_prior(x, q, q, np.array(["a"] * 4), irt_weights=())


_SMALL_IRT = dict(irt_hidden=8, irt_skills=2, irt_lr=1e-2, irt_max_steps=200)


def _readable_by_a_direction(n=300, seed=0):
    """One task; the prompts of :func:`_half_readable` are told apart by the sign of one
    feature among noise: the flat task prior cannot read it, a linear trunk can."""
    even, q, c = _half_readable(n, seed)
    x = np.random.default_rng(seed + 1).normal(0.0, 1.0, (n, 8)).astype(np.float32)
    x[:, 0] = np.where(even, 2.0, -2.0) + 0.1 * x[:, 0]
    return x, q, c, np.array(["t"] * n), even


@pytest.mark.slow
def test_cross_fitting_blends_in_the_item_response_model_when_only_it_reads_the_question(
    tmp_path,
):
    x, q, c, tasks, even = _readable_by_a_direction()
    rc = base.router("taskprior", irt_weights=(0.0, 0.5), cv_folds=3, **_SMALL_IRT)
    train = training_part(x, q, c, tasks)
    spec = router_spec("taskprior")
    state = spec.fit_state(train, rc)
    sel = state.selection
    assert sel["irt_lambda_cost_ratio"]["0.0"] == 1.0  # the flat prior: all to model 1
    assert sel["irt_lambda_cost_ratio"]["0.5"] < 0.8
    assert sel["irt_win_share"]["0.5"] >= selection.IRT_WIN_SHARE
    assert state.irt_weight == sel["irt_weight"] == 0.5 and state.irt is not None
    # The routed score is half the flat prior, half the item-response model fitted on
    # every training prompt with the same settings and seed.
    plain = tp.fit_task_prior(x, q, c, tasks)
    model = irt_mod.model_of(
        irt_mod.fit_irt(x, q, c, tasks, hidden=8, skills=2, learning_rate=1e-2, steps=200)
    )
    prior_s, prior_c = tp.predict_task_prior(plain, x)
    scores, costs = tp.predict_task_prior(state, x)
    np.testing.assert_allclose(
        scores, 0.5 * prior_s + 0.5 * irt_mod.model_probabilities(model, x), rtol=1e-6
    )
    np.testing.assert_array_equal(costs, prior_c)  # the item-response model prices nothing
    # It reads the direction: model 0 likelier right than not on the even prompts only.
    assert np.mean((irt_mod.model_probabilities(model, x)[:, 0] > 0.5) == even) > 0.95
    record = spec.fitted_choices(state)
    assert record["irt_weight"] == 0.5 and record["irt_steps"] == model["steps"] > 0
    assert record["irt_win_share"] == sel["irt_win_share"]
    # The fitted state round-trips through inert arrays: the same scores, bit for bit.
    fitted.save_state(tmp_path, "best", 0, spec, state, rc, n_train=len(x))
    with np.load(tmp_path / "fitted" / "best" / "seed_0.npz", allow_pickle=False) as f:
        assert "irt/params/params/trunk/kernel" in f.files
    restored, _ = fitted.load_state(tmp_path, "best", 0, spec, rc)
    assert spec.fitted_choices(restored) == record
    for a, b in zip(
        spec.predict_with(state, x, rc), spec.predict_with(restored, x, rc), strict=True
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_where_it_adds_nothing_the_router_is_the_one_fitted_without_it():
    # Two tasks the features tell apart; at model 0's quality every router's cheapest
    # point sends everything to it (CR 1), so no weight can win and the least is kept.
    rng = np.random.default_rng(0)
    tasks = np.array(["a", "b"] * 30)
    x = rng.normal(0.0, 0.05, (60, 4)).astype(np.float32)
    x[tasks == "a", 0] += 1.0
    x[tasks == "b", 1] += 1.0
    q = np.where(tasks[:, None] == "a", [1.0, 0.0], [0.0, 1.0]).astype(np.float32)
    c = np.tile(np.array([[1.0, 2.0]], np.float32), (60, 1))
    c[tasks == "b"] *= 3.0
    kw = dict(blend_k=5, blend_weights=(0.0, 1.0), calibrate_temperature=True, cv_folds=3)
    plain = tp.fit_task_prior(x, q, c, tasks, **kw)
    state = tp.fit_task_prior(x, q, c, tasks, irt_weights=(0.0, 0.5), **kw, **_SMALL_IRT)
    assert state.selection["irt_win_share"] == {"0.5": 0.0}
    assert state.irt_weight == 0.0 and state.irt is None
    pairs = zip(tp.predict_task_prior(plain, x), tp.predict_task_prior(state, x), strict=True)
    for a, b in pairs:
        np.testing.assert_array_equal(a, b)
    # Everything but the item-response record is the plain router's.
    spec = router_spec("taskprior")
    without, with_ = spec.fitted_choices(plain), spec.fitted_choices(state)
    assert "irt_weight" not in without and with_["irt_weight"] == 0.0
    assert {k: v for k, v in with_.items() if not k.startswith("irt_")} == without
