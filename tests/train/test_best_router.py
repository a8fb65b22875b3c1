"""The ``best`` configuration (launch/best_router.flags) end to end at a tiny size."""

import json

from jaxroute.configs import best
from jaxroute.train import experiment as E


def test_best_config_trains_and_reports_both_routers_under_both_rules(tmp_path):
    c = best.get_config("tiny")
    c.seeds = (0, 1)
    report = E.train_and_evaluate(c, tmp_path)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert sorted(saved["routers"]) == ["best", "knn"]
    for name in ("best", "knn"):
        entry = saved["routers"][name]
        assert entry["n_seeds"] == 2 and entry["lambda"]["n_seeds"] == 2
        for rule in (entry, entry["lambda"]):
            assert 0.0 <= rule["peak"] <= 1.0
    assert report["routers"]["best"]["peak"] == saved["routers"]["best"]["peak"]
