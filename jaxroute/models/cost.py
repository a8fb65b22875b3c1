"""The cost regressor (docs/method.md §3, "Cost network"): predicted USD cost per model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxroute.losses import mse_loss


class CostRegressor(nn.Module):
    """Predicts each model's cost ``ĉ(x, m)`` in USD from prompt features.

    Architecture: a linear bottleneck ``D → D/4 → D`` (no activation), then
    ``Dense(256) → ReLU → Dense(128) → ReLU → Dense(M)``. Kernels init normal std 0.01,
    biases zero.

    Training target and output space:
        * ``log_cost=False`` (the reference): ``__call__`` outputs USD directly; train with
          MSE against raw costs.
        * ``log_cost=True``: ``__call__`` outputs ``log(cost + log_eps)``; train with MSE
          against :meth:`cost_to_target` ``(cost)``.

        In both cases :meth:`predict_cost` (``model.apply(params, x,
        method="predict_cost")``) returns USD, and :meth:`cost_to_target` /
        :meth:`target_to_cost` map between USD and the output space without parameters.
        Raw-mode predictions are not clipped and can be slightly negative.

    Attributes:
        num_models: number of candidate models ``M``.
        log_cost: regress ``log(cost + log_eps)`` instead of raw USD.
        log_eps: offset inside the log (USD), so zero costs stay finite.
        init_std: standard deviation of the kernel initialiser.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = CostRegressor(num_models=3, log_cost=True)
        >>> x = jnp.ones((2, 8))
        >>> params = jax.eval_shape(model.init, jax.random.key(0), x)  # shapes only
        >>> jax.eval_shape(lambda p: model.apply(p, x, method="predict_cost"), params).shape
        (2, 3)
        >>> float(model.target_to_cost(model.cost_to_target(jnp.float32(0.002))))
        0.002
    """

    num_models: int
    log_cost: bool = False
    log_eps: float = 1e-6
    init_std: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Outputs ``[B, M]`` in the training space (USD, or log-USD when ``log_cost``)."""
        del deterministic
        dim = x.shape[-1]

        def dense(features: int, name: str) -> nn.Dense:
            return nn.Dense(
                features,
                kernel_init=nn.initializers.normal(stddev=self.init_std),
                bias_init=nn.initializers.zeros_init(),
                name=name,
            )

        h = dense(max(dim // 4, 1), "bottleneck_down")(x)
        h = dense(dim, "bottleneck_up")(h)
        h = nn.relu(dense(256, "hidden_0")(h))
        h = nn.relu(dense(128, "hidden_1")(h))
        return dense(self.num_models, "out")(h)

    def predict_cost(self, x: jax.Array) -> jax.Array:
        """Predicted cost in USD, ``[B, M]``, whatever the training space."""
        return self.target_to_cost(self(x))

    @nn.nowrap
    def cost_to_target(self, cost: jax.typing.ArrayLike) -> jax.Array:
        """Maps USD costs ``[..., M]`` to the regression target (identity or log)."""
        cost = jnp.asarray(cost)
        return jnp.log(cost + self.log_eps) if self.log_cost else cost

    @nn.nowrap
    def target_to_cost(self, out: jax.typing.ArrayLike) -> jax.Array:
        """Inverse of :meth:`cost_to_target`: network outputs ``[..., M]`` to USD."""
        out = jnp.asarray(out)
        return jnp.exp(out) - self.log_eps if self.log_cost else out


def cost_objective(module: CostRegressor, rc=None):
    """The cost model's objective: MSE to ``module.cost_to_target(cost)`` on valid rows."""
    del rc

    def objective(out, batch, **hparams):
        where = jnp.broadcast_to(batch["mask"][:, None], out.shape)
        return mse_loss(out, module.cost_to_target(batch["cost"]), where=where)

    return objective
