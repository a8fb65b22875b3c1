"""Every loss of ``jaxroute.losses.LOSSES`` on the same model, data and seeds.

    python -m jaxroute.launch.train --flagfile=launch/loss_ablation.flags

Each router is EquiRouter's network trained with one loss (the router's name is the
loss's name); the MLP regressor with MSE is kept as the collapsing reference.
"""

import ml_collections

from jaxroute.configs import base

# Losses whose scores are logits of quality (trained against 0/1 labels): all fine for
# ranking, since the budget rule only compares scores within a prompt.
ABLATION_LOSSES = (
    "mse",
    "bce",
    "pairwise_logistic",
    "pairwise_logistic_tb",
    "pairwise_hinge",
    "softmax",
    "listmle",
    "neuralsort",
    "softsort",
    "budget_regret",
    "wtp_regret",
    "equirouter",
    "equirouter_tb",
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_config(arg)
    tiny = "tiny" in (arg or "")
    model_kwargs = {"trunk_sizes": (32, 16, 16), "embed_dim": 8, "head_size": 16} if tiny else {}
    r = ml_collections.ConfigDict()
    for loss in ABLATION_LOSSES:
        r[loss] = base.router("equirouter", loss, model_kwargs=dict(model_kwargs))
    r.mlp_mse = base.router(
        "mlp", "mse", model_kwargs={"hidden_sizes": (32,) if tiny else (256, 256)}
    )
    c.routers = r
    return c
