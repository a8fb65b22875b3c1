"""Score regressors: per-model MLP, linear and EmbedLLM-style matrix factorisation.

Every module maps prompt features ``[B, D]`` to one score per candidate model ``[B, M]``;
``M`` is the ``num_models`` field. All take ``deterministic`` as a keyword so a trainer can
call every model the same way (``rngs={"dropout": key}`` when ``deterministic=False``).
Dense layers use a xavier-uniform kernel and a zero bias.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

_ACTIVATIONS = {
    "relu": nn.relu,
    # Exact (erf) GELU, as torch's default and EquiRouter's trunk.
    "gelu": lambda x: nn.gelu(x, approximate=False),
    # tanh-approximate GELU (jax.nn.gelu's default), the taskprior MLP's.
    "gelu_tanh": lambda x: nn.gelu(x, approximate=True),
}

xavier_uniform = nn.initializers.xavier_uniform()
zeros = nn.initializers.zeros_init()


def dense(
    features: int, name: str | None = None, use_bias: bool = True, dot_general=None
) -> nn.Dense:
    """A Dense layer with xavier-uniform kernel and zero bias (the project default);
    ``dot_general`` replaces its product (None: ``lax.dot_general``)."""
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=xavier_uniform,
        bias_init=zeros,
        dot_general=dot_general,
        name=name,
    )


class MLPRegressor(nn.Module):
    """Per-model quality regressor: an MLP with ``M`` outputs (the classic collapsing router).

    Trained pointwise (MSE against quality in [0, 1]); the budget rule then takes the argmax
    of its outputs, which is what collapses onto the strongest model.

    Attributes:
        num_models: number of candidate models ``M``.
        hidden_sizes: widths of the hidden layers.
        activation: ``"relu"``, ``"gelu"`` (exact) or ``"gelu_tanh"``.
        dropout: dropout rate after every hidden activation (0 disables it).
        layer_name: the hidden layers' names, ``layer_name.format(i=i)`` (a class
          attribute, not a field: the names seed Flax's initialisers, so a subclass that
          renames them keeps another module's initial values).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = MLPRegressor(num_models=3, hidden_sizes=(8,))
        >>> params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4)))
        >>> model.apply(params, jnp.ones((2, 4))).shape
        (2, 3)
    """

    num_models: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    dropout: float = 0.0
    layer_name: ClassVar[str] = "hidden_{i}"

    def __post_init__(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"MLPRegressor.activation must be one of {sorted(_ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Scores ``[B, M]`` for features ``x`` of shape ``[B, D]``."""
        act = _ACTIVATIONS[self.activation]
        h = x
        for i, width in enumerate(self.hidden_sizes):
            h = act(dense(width, name=self.layer_name.format(i=i))(h))
            if self.dropout > 0.0:
                h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        return dense(self.num_models, name="out")(h)


class LinearRegressor(nn.Module):
    """Linear per-model quality regressor: ``s = x W + b``, ``W`` of shape ``[D, M]``.

    Attributes:
        num_models: number of candidate models ``M``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = LinearRegressor(num_models=3)
        >>> params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4)))
        >>> model.apply(params, jnp.ones((2, 4))).shape
        (2, 3)
    """

    num_models: int

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Scores ``[B, M]`` for features ``x`` of shape ``[B, D]``."""
        del deterministic
        return dense(self.num_models, name="out")(x)


class MatrixFactorisation(nn.Module):
    """EmbedLLM-style matrix factorisation router; outputs quality *logits*.

    ``logit[b, m] = <P x_b, e_m> + bias_m``, with ``P`` a ``[D, dim]`` projection (no bias),
    ``e_m`` a learned model embedding in ``R^dim`` (init normal, std 0.02) and a per-model
    bias (init 0). Train with binary cross-entropy on quality (``sigmoid`` gives the
    predicted probability of a correct answer); the logits are the routing scores.

    Attributes:
        num_models: number of candidate models ``M``.
        dim: latent dimension of the factorisation.
        embed_std: standard deviation of the model-embedding initialiser.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = MatrixFactorisation(num_models=3, dim=8)
        >>> params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 4)))
        >>> model.apply(params, jnp.ones((2, 4))).shape
        (2, 3)
    """

    num_models: int
    dim: int = 128
    embed_std: float = 0.02

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool = True) -> jax.Array:
        """Logits ``[B, M]`` for features ``x`` of shape ``[B, D]``."""
        del deterministic
        q = dense(self.dim, name="prompt_proj", use_bias=False)(x)  # [B, dim]
        e = self.param(
            "model_embedding",
            nn.initializers.normal(stddev=self.embed_std),
            (self.num_models, self.dim),
        )
        bias = self.param("model_bias", zeros, (self.num_models,))
        return jnp.dot(q, e.T) + bias[None, :]
