"""The ``best`` configuration (launch/best_router.flags) end to end at a tiny size."""

import json

import numpy as np
import pytest

from jaxroute.configs import best
from jaxroute.models import fitted, router_spec
from jaxroute.models import taskprior as tp
from jaxroute.train import experiment as E

pytestmark = pytest.mark.slow  # docs/testing.md


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run of the best config; the fitted ``best`` states, in the order fit."""
    tmp = tmp_path_factory.mktemp("best")
    c = best.get_config("tiny")
    c.seeds = (0, 1)
    states = []

    def fit(train, rc):
        states.append(real_fit(train, rc))
        return states[-1]

    real_fit = tp.taskprior_fit
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tp, "taskprior_fit", fit)  # the router table resolves it at each fit
        report = E.train_and_evaluate(c, tmp)
    return c, tmp, report, states


def test_best_config_trains_and_reports_both_routers_under_both_rules(run):
    c, tmp, report, _ = run
    saved = json.loads((tmp / "report.json").read_text())
    assert sorted(saved["routers"]) == ["best", "knn"]
    splits = E.make_splits(c, E.load_experiment_data(c))
    for name in ("best", "knn"):
        entry = saved["routers"][name]
        rc = c.routers[name]
        spec = router_spec(rc.model)
        assert entry["n_seeds"] == 2 and entry["lambda"]["n_seeds"] == 2
        for k, (seed, test) in enumerate(zip(splits.seeds, splits.test, strict=True)):
            # At the largest budget (λ = 0) both rules send each prompt to the top score
            # of the router the run stored: the report's quality there is that routing's.
            state, _ = fitted.load_state(tmp, name, seed, spec, rc)
            scores = np.asarray(spec.predict_with(state, test.features, rc)[0])
            top = test.quality[np.arange(len(scores)), scores.argmax(1)].astype(np.float64)
            for rule in (entry, entry["lambda"]):
                got = rule["seeds"][k]
                assert got["quality_at_max_budget"] == pytest.approx(top.mean(), rel=1e-12)
                assert got["peak"] >= got["quality_at_max_budget"]
        for rule in (entry, entry["lambda"]):
            assert rule["peak"] == pytest.approx(np.mean([s["peak"] for s in rule["seeds"]]))
    assert report["routers"]["best"]["peak"] == saved["routers"]["best"]["peak"]


def test_report_records_the_choices_best_made_per_seed(run):
    c, tmp, report, states = run
    saved = json.loads((tmp / "report.json").read_text())
    assert "fitted" not in saved["routers"]["knn"]  # kNN chooses nothing
    records = saved["routers"]["best"]["fitted"]
    assert [r["seed"] for r in records] == [0, 1]
    assert len(states) == 2  # one fit per seed
    weights = tuple(c.routers.best.blend_weights)
    mlp_weights = tuple(c.routers.best.mlp_weights)
    assert c.routers.best.mlp_hidden > 0 and len(mlp_weights) > 1
    for record, state in zip(records, states, strict=True):
        # The record is what the fitted router holds.
        assert record["temperature"] == state.temperature
        assert record["blend_weight"] == state.blend_weight
        assert record["cost_margin"] == state.cost_margin
        assert record["blend_k"] == state.blend_k
        assert record["folds"] == state.selection["folds"] == c.routers.best.cv_folds
        # ... and each choice is on its grid, chosen by the scores stored beside it.
        assert record["temperature"] in tp.TEMPERATURE_GRID
        nll = record["task_nll"]
        assert sorted(map(float, nll)) == sorted(tp.TEMPERATURE_GRID)
        assert nll[str(record["temperature"])] == min(nll.values())
        assert record["blend_weight"] in weights
        assert record["mlp_weight"] == state.mlp_weight
        assert record["mlp_weight"] in mlp_weights
        assert (state.mlp is not None) == (record["mlp_weight"] > 0)
        # Candidates "w+mlpV": every pair of a prior and an MLP weight with w + v <= 1.
        cr = {
            tuple(map(float, key.split("+mlp"))): np.inf if v is None else v
            for key, v in record["lambda_cost_ratio"].items()
        }
        pairs = [(w, v) for w in weights for v in mlp_weights if w + v <= 1.0]
        assert sorted(cr) == sorted(pairs)
        assert cr[record["blend_weight"], record["mlp_weight"]] == min(cr.values())
        assert record["cost_margin"] in tp.MARGIN_GRID
        bounds = {float(m): v for m, v in record["margin_lower_bound"].items()}
        assert record["margin_z"] == c.routers.best.cost_margin_z
        assert all(bounds[m] >= 0 for m in bounds if m <= record["cost_margin"])
        assert record["cost_margin"] == max(tp.MARGIN_GRID) or min(bounds.values()) < 0
    # The in-memory report is the saved one; report.md tables the scalar choices.
    assert report["routers"]["best"]["fitted"] == records
    md = (tmp / "report.md").read_text()
    assert "## Choices made in fit" in md and "### best" in md and "### knn" not in md
    assert "| seed | temperature | blend_weight | mlp_weight | cost_margin | blend_k |" in md
