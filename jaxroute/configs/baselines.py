"""The prior routers of docs/method.md §4: MLP / linear / matrix-factorisation regressors, kNN.

    python -m jaxroute.launch.train --flagfile=launch/baselines_routerbench.flags \
        --data_path=PATH/TO/routerbench_data

The reference routers (oracle, best single, cheapest, random, zero router) are in every
report.
"""

import ml_collections

from jaxroute.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_config(arg)
    tiny = "tiny" in (arg or "")
    r = ml_collections.ConfigDict()
    r.mlp = base.router("mlp", "mse", model_kwargs={"hidden_sizes": (32,) if tiny else (256, 256)})
    r.linear = base.router("linear", "mse")
    r.mf = base.router("mf", "bce", model_kwargs={"dim": 8 if tiny else 128})
    r.knn = base.router("knn", k=10 if tiny else 100)
    c.routers = r
    return c
