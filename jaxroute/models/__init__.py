"""Routers: Flax modules mapping prompt features ``[B, D]`` to per-model scores ``[B, M]``.

Score regressors (MLP, linear, EmbedLLM-style matrix factorisation), the EquiRouter
ranker, the cost regressor, and the kNN router as a pure function. ``ROUTERS``
(:mod:`jaxroute.models.table`) maps each router name to its :class:`RouterSpec`; adding
a router is one module file plus one line there. Modules are used functionally:
``variables = init_params(model, rng, D)``, ``model.apply(variables, x)``.

Names are imported on first use, so ``jaxroute.models.table`` (what the config files
read) does not import Flax.
"""

import importlib

_NAMES = {
    "ROUTERS": "table",
    "router_spec": "table",
    "RouterSpec": "spec",
    "MODELS": "factory",
    "count_params": "factory",
    "init_params": "factory",
    "make_model": "factory",
    "CostRegressor": "cost",
    "EquiRouter": "equirouter",
    "knn_predict": "knn",
    "LinearRegressor": "regressors",
    "MatrixFactorisation": "regressors",
    "MLPRegressor": "regressors",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module 'jaxroute.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"jaxroute.models.{_NAMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
