"""kNN router against a brute-force NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxroute.models import knn_predict


def _reference(train_x, quality, cost, query_x, k):
    tn = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    qn = query_x / np.linalg.norm(query_x, axis=1, keepdims=True)
    sims = qn @ tn.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return quality[idx].mean(axis=1), cost[idx].mean(axis=1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, m, d = 60, 4, 6
    train_x = rng.normal(size=(n, d)).astype(np.float32)
    quality = (rng.uniform(size=(n, m)) > 0.5).astype(np.float32)
    cost = rng.uniform(1e-5, 1e-2, size=(n, m)).astype(np.float32)
    query_x = rng.normal(size=(37, d)).astype(np.float32)
    return train_x, quality, cost, query_x


@pytest.mark.parametrize(("k", "chunk_size"), [(5, 8), (1, 37), (60, 100), (7, 1)])
def test_matches_bruteforce(data, k, chunk_size):
    train_x, quality, cost, query_x = data  # 37 queries: not a multiple of 8
    q, c = knn_predict(train_x, quality, cost, query_x, k=k, chunk_size=chunk_size)
    q_ref, c_ref = _reference(train_x, quality, cost, query_x, k)
    assert q.shape == (37, 4) and c.shape == (37, 4)
    np.testing.assert_allclose(q, q_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=1e-9)


def test_scale_invariant_and_inside_jit(data):
    train_x, quality, cost, query_x = data
    q, c = knn_predict(train_x, quality, cost, query_x, k=3, chunk_size=16)
    jitted = jax.jit(lambda a, b: knn_predict(a, quality, cost, b, k=3, chunk_size=16))
    q2, c2 = jitted(jnp.asarray(train_x) * 3.0, jnp.asarray(query_x) * 0.1)
    np.testing.assert_allclose(q2, q, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c2, c, rtol=1e-5, atol=1e-9)


def test_errors(data):
    train_x, quality, cost, query_x = data
    with pytest.raises(ValueError, match="k must be"):
        knn_predict(train_x, quality, cost, query_x, k=61)
    with pytest.raises(ValueError, match="k must be"):
        knn_predict(train_x, quality, cost, query_x, k=0)
    with pytest.raises(ValueError, match="feature dims differ"):
        knn_predict(train_x, quality, cost, query_x[:, :5], k=3)
    with pytest.raises(ValueError, match="train_quality"):
        knn_predict(train_x, quality[:10], cost, query_x, k=3)
    with pytest.raises(ValueError, match="same shape"):
        knn_predict(train_x, quality, cost[:, :2], query_x, k=3)
    with pytest.raises(ValueError, match="chunk_size"):
        knn_predict(train_x, quality, cost, query_x, k=3, chunk_size=0)
