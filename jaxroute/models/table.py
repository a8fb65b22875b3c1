"""The router table: name -> :class:`RouterSpec`. Add a router with one line here.

The experiment (``fit``, ``evaluate``), the ``route`` app and the config files iterate
over this table; nothing outside a router's own module asks which router it is. This
file imports no Flax: modules are named as ``"package.module:Class"`` and imported when
built, and their config defaults are stated here (``tests/models`` checks them against
the modules' own field defaults) or, for a router with many settings, derived from one
Flax-free dataclass of them (``taskprior``: :class:`TaskPriorConfig`).
"""

from __future__ import annotations

from jaxroute.models.spec import RouterSpec, dataclass_docs, dataclass_fields
from jaxroute.models.taskprior_config import TaskPriorConfig

_R = "jaxroute.models.regressors:"

ROUTERS: dict[str, RouterSpec] = {
    "mlp": RouterSpec(
        module=_R + "MLPRegressor",
        model_kwargs={"hidden_sizes": (256, 256), "activation": "relu", "dropout": 0.0},
        description="per-model quality regressor (MLP)",
    ),
    "linear": RouterSpec(module=_R + "LinearRegressor", description="linear regressor"),
    "mf": RouterSpec(
        module=_R + "MatrixFactorisation",
        model_kwargs={"dim": 128, "embed_std": 0.02},
        description="EmbedLLM-style matrix factorisation",
    ),
    "equirouter": RouterSpec(
        module="jaxroute.models.equirouter:EquiRouter",
        model_kwargs={
            "trunk_sizes": (1024, 512, 512),
            "embed_dim": 128,
            "head_size": 512,
            "embed_std": 0.02,
            "layer_norm_eps": 1e-5,
            "fast": True,
            "matmul_dtype": "float32",
        },
        field_docs={
            "matmul_dtype": "float32 | bfloat16 (opt-in: bf16 GEMM operands, f32 accumulation)",
        },
        description="EquiRouter ranker (docs/method.md §3)",
    ),
    "cost": RouterSpec(
        module="jaxroute.models.cost:CostRegressor",
        model_kwargs={"log_cost": False, "log_eps": 1e-6, "init_std": 0.01},
        objective="jaxroute.models.cost:cost_objective",
        description="cost regressor (predicted USD per model)",
    ),
    "knn": RouterSpec(
        fit="jaxroute.models.knn:knn_fit",
        predict="jaxroute.models.knn:knn_router_predict",
        fields={"k": 100, "cost_source": "own"},
        field_docs={
            "k": "kNN neighbours (clipped to the training size)",
            "cost_source": "own (the neighbours' mean cost) | cost_model (the cost model's)",
        },
        description="k nearest training prompts (cosine); no training",
    ),
    "taskprior": RouterSpec(
        fit="jaxroute.models.taskprior:taskprior_fit",
        predict="jaxroute.models.taskprior:taskprior_predict",
        choices="jaxroute.models.taskprior:taskprior_choices",
        state_type="jaxroute.models.taskprior_model:TaskPriorState",
        fields=dataclass_fields(TaskPriorConfig),
        field_docs=dataclass_docs(TaskPriorConfig),
        description="task posterior x per-task model statistics (fitted, no epochs)",
    ),
    "irt": RouterSpec(
        fit="jaxroute.models.irt:irt_fit",
        predict="jaxroute.models.irt:irt_predict",
        choices="jaxroute.models.irt:irt_choices",
        state_type="jaxroute.models.irt:IRTState",
        fields={
            "hidden": 256,
            "skills": 8,
            "irt_loss": "bce",
            "irt_steps": 400,
            "irt_check_every": 25,
            "irt_learning_rate": 1e-3,
            "irt_weight_decay": 1e-2,
            "task_weight": 1.0,
            "irt_val_fraction": 0.2,
            "cost_k": 100,
            "knn_weight": 0.0,
        },
        field_docs={
            "hidden": "width of the shared trunk Dense(hidden) -> GELU",
            "skills": "latent skills of a question (matrix factorisation; 0: none)",
            "irt_loss": "a LOSSES key on the logits (bce, bce_wtp, ...)",
            "irt_steps": "most full-batch AdamW steps (early stopping picks fewer)",
            "irt_check_every": "steps between two reads of the held-out loss",
            "irt_learning_rate": "AdamW learning rate",
            "irt_weight_decay": "AdamW weight decay",
            "task_weight": "weight of the task head's cross-entropy",
            "irt_val_fraction": "training prompts held out to choose the step count",
            "cost_k": "neighbours whose mean cost is the predicted cost",
            "knn_weight": "weight of those neighbours' mean quality in the score",
        },
        description="item response: question difficulty, discrimination, skills, task ability",
    ),
}


def field_doc(field: str) -> str:
    """The one-line description of a router config field of some table entry ('' if none)."""
    return next((s.field_docs[field] for s in ROUTERS.values() if field in s.field_docs), "")


def router_spec(name: str) -> RouterSpec:
    """The spec of router kind ``name`` (a ValueError lists the known ones)."""
    if name not in ROUTERS:
        raise ValueError(f"unknown model {name!r}; choose a router of {sorted(ROUTERS)}")
    return ROUTERS[name]
