"""Build a trainable router's module by name, initialise its parameters, count them."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxroute.models.spec import resolve
from jaxroute.models.table import ROUTERS, router_spec

#: name -> Flax module class of every trainable router of ``ROUTERS``.
MODELS: dict[str, type[nn.Module]] = {
    name: resolve(spec.module) for name, spec in ROUTERS.items() if spec.trainable
}


def make_model(name: str, num_models: int, **kwargs: Any) -> nn.Module:
    """Returns the Flax module of router ``name`` for ``num_models`` candidates.

    Args:
        name: a trainable router of ``ROUTERS`` (``"mlp"``, ``"linear"``, ``"mf"``,
            ``"equirouter"``, ``"cost"``, ...).
        num_models: number of candidate models ``M``.
        **kwargs: the module's other fields (e.g. ``hidden_sizes``, ``fast``).

    Example:
        >>> make_model("mlp", 11, hidden_sizes=(64,)).hidden_sizes
        (64,)
    """
    spec = router_spec(name)
    if not spec.trainable:
        raise ValueError(f"router {name!r} has no module (it does not train by gradient)")
    return spec.build(num_models, **kwargs)


def init_params(model: nn.Module, rng: jax.Array, feature_dim: int) -> dict[str, Any]:
    """Initial variables of ``model`` for ``feature_dim``-dimensional features.

    Pure in ``rng`` and compiled with ``jax.jit`` (``model.init``'s values up to float rounding), so
    ``jax.eval_shape(lambda k: init_params(model, k, d), rng)`` gives the parameter shapes
    without allocating them.

    Returns:
        The variables dict (``{"params": ...}``) to pass to ``model.apply``.

    Example:
        >>> import jax
        >>> model = make_model("linear", 3)
        >>> shapes = jax.eval_shape(lambda k: init_params(model, k, 4), jax.random.key(0))
        >>> shapes["params"]["out"]["kernel"].shape
        (4, 3)
    """
    # One compiled init instead of op-by-op initialisers (much faster for big modules).
    return jax.jit(model.init)(rng, jnp.zeros((1, feature_dim), jnp.float32))


def count_params(params: Any) -> int:
    """Total number of scalars in a pytree of arrays (or of ``ShapeDtypeStruct``).

    Example:
        >>> import jax.numpy as jnp
        >>> count_params({"a": jnp.zeros((2, 3)), "b": jnp.zeros(4)})
        10
    """
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
