"""Every loss of ``jaxroute.losses.LOSSES`` on the same model, data and seeds.

    python -m jaxroute.launch.train --flagfile=launch/loss_ablation.flags

Each router is EquiRouter's network trained with one loss (the router's name is the
loss's name); the MLP regressor with MSE is kept as the collapsing reference, and
``rank_weight`` sweeps EquiRouter's pairwise weight w in one vmapped state (reported as
``rank_weight[rank_weight=w]``). :func:`ablation_config` builds the same experiment for
other losses and another loss keyword's grid (the notebook
``notebooks/loss_ablation.py`` takes them as parameters); from the command line, a grid
is ``--config.routers.NAME.hparams.KEY='(v1,v2,v3)'``.
"""

from collections.abc import Sequence

import ml_collections

from jaxroute.configs import base
from jaxroute.losses import LOSSES

RANK_WEIGHTS = (0.0, 1.0, 10.0, 50.0)


def ablation_losses() -> tuple[str, ...]:
    """Every entry of the loss table."""
    return tuple(LOSSES)


def ablation_config(
    losses: Sequence[str] | None = None,
    *,
    sweep_loss: str = "equirouter",
    sweep_key: str = "rank_weight",
    sweep_values: Sequence[float] = RANK_WEIGHTS,
    arg: str | None = None,
) -> ml_collections.ConfigDict:
    """One EquiRouter-network router per loss of ``losses`` (default: every loss), the
    ``mlp_mse`` reference, and a router named ``sweep_key`` trained with ``sweep_loss``
    at each of ``sweep_values`` of its keyword ``sweep_key`` (none if ``sweep_values`` is
    empty). ``arg``: :func:`base.get_config`'s (``tiny``)."""
    c = base.get_config(arg)
    tiny = "tiny" in (arg or "")
    model_kwargs = {"trunk_sizes": (32, 16, 16), "embed_dim": 8, "head_size": 16} if tiny else {}
    r = ml_collections.ConfigDict()
    for loss in ablation_losses() if losses is None else losses:
        r[loss] = base.router("equirouter", loss, model_kwargs=dict(model_kwargs))
    if sweep_values:
        r[sweep_key] = base.router(
            "equirouter",
            sweep_loss,
            model_kwargs=dict(model_kwargs),
            hparams={sweep_key: tuple(float(v) for v in sweep_values)},
        )
    r.mlp_mse = base.router(
        "mlp", "mse", model_kwargs={"hidden_sizes": (32,) if tiny else (256, 256)}
    )
    c.routers = r
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return ablation_config(arg=arg)
