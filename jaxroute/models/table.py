"""The router table: name -> :class:`RouterSpec`. Add a router with one line here.

The experiment (``fit``, ``evaluate``), the ``route`` app and the config files iterate
over this table; nothing outside a router's own module asks which router it is. This
file imports no Flax: modules are named as ``"package.module:Class"`` and imported when
built, and their config defaults are stated here (``tests/models`` checks them against
the modules' own field defaults).
"""

from __future__ import annotations

from jaxroute.models.spec import RouterSpec

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
        description="EquiRouter ranker (METHOD.md §4)",
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
        state_type="jaxroute.models.taskprior:TaskPriorState",
        fields={
            "steps": 300,
            "head_learning_rate": 3e-3,
            "head_weight_decay": 1e-4,
            "prior_strength": 1.0,
            "temperature": 1.0,
            "knn_k": 0,
            "knn_strength": 1.0,
            "residual_loss": "",
            "residual_steps": 400,
            "residual_learning_rate": 1e-2,
            "residual_l2": 0.1,
            "blend_k": 0,
            "blend_weights": (1.0,),
            "cost_margin": 0.0,
            "cost_margin_z": 0.0,
            "calibrate_temperature": False,
            "cv_folds": 5,
            "mlp_hidden": 0,
            "mlp_steps": 400,
            "mlp_learning_rate": 1e-3,
            "mlp_weight_decay": 1e-2,
            "mlp_weights": (0.0,),
        },
        field_docs={
            "steps": "full-batch Adam steps of the task head",
            "head_learning_rate": "task head learning rate",
            "head_weight_decay": "task head weight decay",
            "prior_strength": "pseudo-prompts shrinking a task's means to the overall ones",
            "temperature": "softmax temperature of the task posterior",
            "knn_k": "neighbours blended in (0: none)",
            "knn_strength": "weight of the task prior against the neighbours",
            "residual_loss": "a LOSSES key: linear per-prompt residual on the prior's logit",
            "residual_steps": "full-batch Adam steps of the residual",
            "residual_learning_rate": "residual learning rate",
            "residual_l2": "L2 penalty on the residual's kernel",
            "blend_k": "neighbours mixed into score and cost with weight 1 - w (0: none)",
            "blend_weights": "candidate prior weights w; several: chosen by cross-fitting",
            "cost_margin": "quality per relative cost subtracted from scores (tie-break)",
            "cost_margin_z": "> 0: choose cost_margin by cross-fitting, z standard errors",
            "calibrate_temperature": "choose the temperature by cross-fitted task NLL",
            "cv_folds": "folds of the cross-fitting on the training prompts",
            "mlp_hidden": "width of a per-prompt BCE MLP in the blend (0: none)",
            "mlp_steps": "full-batch AdamW steps of the MLP",
            "mlp_learning_rate": "MLP learning rate",
            "mlp_weight_decay": "MLP weight decay",
            "mlp_weights": "candidate MLP weights v (with w: chosen by cross-fitting)",
        },
        description="task posterior x per-task model statistics (fitted, no epochs)",
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
