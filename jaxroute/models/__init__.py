"""Flax modules mapping prompt features ``[B, D]`` to per-model scores ``[B, M]``.

Score regressors (MLP, linear, EmbedLLM-style matrix factorisation), the EquiRouter
ranker, the cost regressor, and the kNN router as a pure function. Modules are used
functionally: ``variables = init_params(model, rng, D)``, ``model.apply(variables, x)``.
"""

from jaxroute.models.cost import CostRegressor
from jaxroute.models.equirouter import EquiRouter
from jaxroute.models.factory import MODELS, count_params, init_params, make_model
from jaxroute.models.knn import knn_predict
from jaxroute.models.regressors import LinearRegressor, MatrixFactorisation, MLPRegressor

__all__ = [
    "MODELS",
    "CostRegressor",
    "EquiRouter",
    "LinearRegressor",
    "MLPRegressor",
    "MatrixFactorisation",
    "count_params",
    "init_params",
    "knn_predict",
    "make_model",
]
