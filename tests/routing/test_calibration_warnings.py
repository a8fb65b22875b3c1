"""calibrate's warnings: a router that cannot move, a wide interval, few prompts."""

import numpy as np

from jaxroute.routing import calibrate as rcal


def _curve(scores, pred, rule="lambda"):
    rng = np.random.default_rng(0)
    n, m = scores.shape
    quality = rng.integers(0, 2, (n, m)).astype(np.float32)
    cost = np.tile(np.float32([1e-4, 1e-3, 1e-2]), (n, 1))
    return rcal.calibration_curve(scores, pred, quality, cost, rule)


def test_a_router_that_always_picks_the_cheapest_model_cannot_move():
    n = 200
    pred = np.tile(np.float32([1e-4, 1e-3, 1e-2]), (n, 1))
    scores = np.tile(np.float32([1.0, 0.0, 0.0]), (n, 1))  # model 0: best and cheapest
    for rule in ("budget", "lambda"):
        curve = _curve(scores, pred, rule)
        w = rcal.calibration_warnings(
            curve, kind="share", target=0.3, model=2, n_calibration=n, ci=(0.0, 0.0)
        )
        assert len(w) == 1 and w[0].startswith("the router cannot move: every parameter gives")
        assert "share 0 " in w[0]


def test_a_router_that_moves_with_a_narrow_interval_and_enough_prompts_gives_none():
    n = 200
    rng = np.random.default_rng(1)
    pred = np.tile(np.float32([1e-4, 1e-3, 1e-2]), (n, 1))
    scores = rng.random((n, 3)).astype(np.float32) + np.float32([0.0, 0.2, 0.4])
    curve = _curve(scores, pred)
    w = rcal.calibration_warnings(
        curve, kind="share", target=0.3, model=2, n_calibration=n, ci=(0.28, 0.33)
    )
    assert w == []
    # the same with an interval of width 0.08 > 0.25 * 0.3 and 40 prompts: two warnings
    w = rcal.calibration_warnings(
        curve, kind="share", target=0.3, model=2, n_calibration=40, ci=(0.26, 0.34)
    )
    assert len(w) == 2
    assert w[0].startswith("the 95% interval on test [0.26, 0.34] is wider than 25% of")
    assert w[1].startswith("only 40 calibration prompts (< 100)")
    # width 0.07 <= 0.075: no interval warning
    w = rcal.calibration_warnings(
        curve, kind="share", target=0.3, model=2, n_calibration=100, ci=(0.26, 0.33)
    )
    assert w == []


def test_a_router_whose_share_jumps_from_0_to_1_cannot_get_near_the_target():
    n = 200
    pred = np.tile(np.float32([1e-4, 1e-3, 1e-2]), (n, 1))
    scores = np.tile(np.float32([0.5, 0.6, 0.9]), (n, 1))  # every prompt alike
    for rule in ("budget", "lambda"):
        curve = _curve(scores, pred, rule)
        share = curve.shares[:, 2]
        assert set(np.unique(share).tolist()) == {0.0, 1.0}  # it moves, in one step
        w = rcal.calibration_warnings(
            curve, kind="share", target=0.2, model=2, n_calibration=n, ci=(0.0, 0.0)
        )
        assert w == [
            "the router cannot get near the target 0.2: the nearest share on the "
            "calibration split is 0; the next value any parameter gives is 1"
        ]
        # a target the step reaches: no warning
        w = rcal.calibration_warnings(
            curve, kind="share", target=1.0, model=2, n_calibration=n, ci=(1.0, 1.0)
        )
        assert w == []
