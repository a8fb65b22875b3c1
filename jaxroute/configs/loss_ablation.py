"""Every loss of ``jaxroute.losses.LOSSES`` on the same model, data and seeds.

    python -m jaxroute.launch.train --flagfile=launch/loss_ablation.flags

Each router is EquiRouter's network trained with one loss (the router's name is the
loss's name); the MLP regressor with MSE is kept as the collapsing reference, and
``rank_weight`` sweeps EquiRouter's pairwise weight w in one vmapped state (reported as
``rank_weight[rank_weight=w]``).
"""

import ml_collections

from jaxroute.configs import base
from jaxroute.losses import LOSSES

RANK_WEIGHTS = (0.0, 1.0, 10.0, 50.0)


def ablation_losses() -> tuple[str, ...]:
    """Every entry of the loss table."""
    return tuple(LOSSES)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_config(arg)
    tiny = "tiny" in (arg or "")
    model_kwargs = {"trunk_sizes": (32, 16, 16), "embed_dim": 8, "head_size": 16} if tiny else {}
    r = ml_collections.ConfigDict()
    for loss in ablation_losses():
        r[loss] = base.router("equirouter", loss, model_kwargs=dict(model_kwargs))
    r.rank_weight = base.router(
        "equirouter",
        "equirouter",
        model_kwargs=dict(model_kwargs),
        hparams={"rank_weight": RANK_WEIGHTS},
    )
    r.mlp_mse = base.router(
        "mlp", "mse", model_kwargs={"hidden_sizes": (32,) if tiny else (256, 256)}
    )
    c.routers = r
    return c
