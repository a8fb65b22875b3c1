"""Routing collapse in miniature: a real (short) training run on the synthetic benchmark.

The MLP quality regressor sends a large share of prompts to the most expensive model at
the largest budget (where every model is affordable, the rule is the argmax of the
scores); EquiRouter trained with cost tie-break sends markedly fewer. A property of the
benchmark, not of one draw: it is checked on three data seeds. Shares of test prompts sent
to the strong model, measured on data seeds 1-5 (2026-12-02, CPU): MLP 0.519-0.560,
EquiRouter-tb 0.013-0.153, oracle 0.056-0.072.
"""

import numpy as np
import pytest

from jaxroute.configs.base import get_config
from jaxroute.data import STRONG_MODEL
from jaxroute.train import evaluation
from jaxroute.train import experiment as E

pytestmark = pytest.mark.slow  # docs/testing.md


@pytest.mark.parametrize("data_seed", [1, 2, 3])
def test_mlp_collapses_equirouter_tiebreak_does_not(tmp_path, data_seed):
    c = get_config("tiny")
    c.data.path = f"synthetic:n_prompts=1500,feature_dim=32,seed={data_seed}"
    c.data.train_fraction = 0.5
    c.seeds = (0,)
    c.train.epochs = 15  # the same budget of steps for both routers
    c.run_routers = "mlp,equirouter_tb"
    c.cost_model.enabled = False
    fitted = E.fit(c, tmp_path)
    test = fitted.splits.test[0]
    strong = test.models.index(STRONG_MODEL)
    share = {}
    for name in ("mlp", "equirouter_tb"):
        scores, _ = evaluation.router_predictions(name, c.routers[name], fitted, None)
        share[name] = float((scores[0].argmax(-1) == strong).mean())
    # The oracle (lowest-cost tie-break) sends under 10% to GPT-4 on this data.
    best = test.quality.max(1, keepdims=True)
    oracle = np.where(test.quality == best, test.cost, np.inf).argmin(1)
    assert (oracle == strong).mean() < 0.1
    assert share["mlp"] > 0.4, share
    assert share["equirouter_tb"] < 0.5 * share["mlp"], share
