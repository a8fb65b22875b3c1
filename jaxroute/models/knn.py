"""kNN router as a pure, jit-compiled function (docs/method.md §4)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_NORM_EPS = 1e-12


def _normalise(x: jax.Array) -> jax.Array:
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, _NORM_EPS)


@functools.partial(jax.jit, static_argnames=("k", "chunk_size"))
def _knn_impl(
    train_x: jax.Array,
    train_quality: jax.Array,
    train_cost: jax.Array,
    query_x: jax.Array,
    k: int,
    chunk_size: int,
) -> tuple[jax.Array, jax.Array]:
    num_queries, dim = query_x.shape
    num_chunks = -(-num_queries // chunk_size)
    pad = num_chunks * chunk_size - num_queries
    train_n = _normalise(train_x.astype(jnp.float32))  # [N, D]
    query_n = _normalise(query_x.astype(jnp.float32))
    query_n = jnp.pad(query_n, ((0, pad), (0, 0))).reshape(num_chunks, chunk_size, dim)

    def one_chunk(q: jax.Array) -> tuple[jax.Array, jax.Array]:
        sims = jnp.dot(q, train_n.T)  # [C, N]; only one chunk exists at a time
        _, idx = jax.lax.top_k(sims, k)  # [C, k]
        quality = jnp.take(train_quality, idx, axis=0).mean(axis=1)  # [C, M]
        cost = jnp.take(train_cost, idx, axis=0).mean(axis=1)
        return quality, cost

    quality, cost = jax.lax.map(one_chunk, query_n)  # [num_chunks, C, M]
    num_models = train_quality.shape[1]
    quality = quality.reshape(-1, num_models)[:num_queries]
    cost = cost.reshape(-1, num_models)[:num_queries]
    return quality, cost


def knn_predict(
    train_x: jax.typing.ArrayLike,
    train_quality: jax.typing.ArrayLike,
    train_cost: jax.typing.ArrayLike,
    query_x: jax.typing.ArrayLike,
    k: int = 10,
    chunk_size: int = 512,
) -> tuple[jax.Array, jax.Array]:
    """Mean quality and cost of the ``k`` most cosine-similar training prompts.

    Rows of ``train_x`` and ``query_x`` are L2-normalised, similarities are one matrix
    product per chunk of ``chunk_size`` queries, and ``jax.lax.top_k`` picks the
    neighbours (ties go to the lower training index). Queries are padded to a multiple of
    ``chunk_size`` and processed with ``jax.lax.map``, so at most ``[chunk_size, N]``
    similarities exist at once and the function compiles once per shape. The shape checks
    are static, so the function can also be called inside another ``jax.jit``.

    Args:
        train_x: training features ``[N, D]``.
        train_quality: training quality ``[N, M]``.
        train_cost: training cost in USD ``[N, M]``.
        query_x: query features ``[Q, D]``.
        k: number of neighbours, ``1 ≤ k ≤ N``.
        chunk_size: queries per chunk (clipped to ``Q``).

    Returns:
        ``(quality, cost)``, each ``[Q, M]`` float32: the kNN router's predicted quality
        (its routing score) and predicted cost.

    Raises:
        ValueError: on mismatched shapes, ``k`` outside ``[1, N]`` or ``chunk_size < 1``.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> quality = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        >>> cost = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        >>> q, c = knn_predict(x, quality, cost, jnp.array([[2.0, 0.0]]), k=2)
        >>> q.tolist(), c.tolist()
        ([[1.0, 0.5]], [[2.0, 3.0]])
    """
    train_x = jnp.asarray(train_x)
    train_quality = jnp.asarray(train_quality, dtype=jnp.float32)
    train_cost = jnp.asarray(train_cost, dtype=jnp.float32)
    query_x = jnp.asarray(query_x)
    if train_x.ndim != 2 or query_x.ndim != 2:
        raise ValueError(
            f"knn_predict: train_x and query_x must be [N, D] and [Q, D], got shapes "
            f"{train_x.shape} and {query_x.shape}"
        )
    if train_x.shape[1] != query_x.shape[1]:
        raise ValueError(
            f"knn_predict: feature dims differ: train_x has D={train_x.shape[1]}, "
            f"query_x has D={query_x.shape[1]}"
        )
    n_train = train_x.shape[0]
    for name, arr in (("train_quality", train_quality), ("train_cost", train_cost)):
        if arr.ndim != 2 or arr.shape[0] != n_train:
            raise ValueError(
                f"knn_predict: {name} must be [N, M] with N={n_train} (rows of train_x), "
                f"got shape {arr.shape}"
            )
    if train_quality.shape != train_cost.shape:
        raise ValueError(
            f"knn_predict: train_quality {train_quality.shape} and train_cost "
            f"{train_cost.shape} must have the same shape"
        )
    if not 1 <= k <= n_train:
        raise ValueError(f"knn_predict: k must be in [1, n_train={n_train}], got k={k}")
    if chunk_size < 1:
        raise ValueError(f"knn_predict: chunk_size must be >= 1, got {chunk_size}")
    num_queries = query_x.shape[0]
    if num_queries == 0:
        empty = jnp.zeros((0, train_quality.shape[1]), jnp.float32)
        return empty, empty
    return _knn_impl(
        train_x,
        train_quality,
        train_cost,
        query_x,
        k=int(k),
        chunk_size=int(min(chunk_size, num_queries)),
    )


COST_SOURCES = ("own", "cost_model")


def knn_fit(train, rc) -> dict[str, jax.typing.ArrayLike]:
    """The kNN router's "training": it keeps the training features, quality and cost."""
    if rc.cost_source not in COST_SOURCES:
        raise ValueError(f"kNN cost_source must be one of {COST_SOURCES}, got {rc.cost_source!r}")
    return {"features": train.features, "quality": train.quality, "cost": train.cost}


def knn_router_predict(state, x, rc) -> tuple[jax.Array, jax.Array | None]:
    """Scores (neighbours' mean quality) and, with ``cost_source="own"``, the neighbours'
    mean cost as predicted cost (None: the experiment's cost model prices the prompts)."""
    train_x = state["features"]
    q, c = knn_predict(train_x, state["quality"], state["cost"], x, k=min(int(rc.k), len(train_x)))
    return q, (c if rc.cost_source == "own" else None)
