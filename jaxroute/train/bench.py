"""Speed figures of training, each as a ratio against a baseline measured in the same run."""

from __future__ import annotations

import resource
import time

import jax
import numpy as np

from jaxroute import data as jdata
from jaxroute.train import _trainer as T


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _equirouter_task(num_models: int, *, fast: bool = True, small: bool = False) -> T.Task:
    """EquiRouter with its reference objective and schedule, as the trainer builds it."""
    from jaxroute.configs import base
    from jaxroute.train.experiment import build_task

    kw = dict(trunk_sizes=(64, 32, 32), embed_dim=16, head_size=32) if small else {}
    rc = base.router("equirouter", "equirouter", model_kwargs={"fast": fast, **kw})
    return build_task(rc, num_models, base.get_config().train, n_train=1)


def _run(task, seeds, train, epochs, batch_size):
    """Trains len(seeds) routers as one vmapped group; returns seconds (after compile)."""
    k = len(seeds)
    d = train.features.shape[1]
    data = {
        "x": np.broadcast_to(train.features, (k, *train.features.shape)),
        "quality": np.broadcast_to(train.quality, (k, *train.quality.shape)),
        "cost": np.broadcast_to(train.cost, (k, *train.cost.shape)),
    }
    data = jax.tree.map(jax.numpy.asarray, data)
    fn = T.compiled_epoch(task)
    n = train.num_prompts

    def once():
        state = T.init_states(task, seeds, d)
        for e in range(epochs):
            parts = [T.epoch_indices(n, batch_size, s, e) for s in seeds]
            idx = np.stack([p[0] for p in parts])
            valid = np.stack([p[1] for p in parts])
            state, losses = fn(state, data, idx, valid)
        jax.block_until_ready(losses)

    once()  # compile
    t0 = time.perf_counter()
    once()
    return time.perf_counter() - t0


def bench_train_vmap(
    k: int = 8, n_prompts: int = 2048, epochs: int = 2, batch_size: int = 128, small=False
) -> dict:
    """K EquiRouters in one vmapped step against K sequential single runs (same work)."""
    train = jdata.synthetic(n_prompts=n_prompts, seed=0, feature_dim=384)
    task = _equirouter_task(train.num_models, small=small)
    seeds = list(range(k))
    jax_s = _run(task, seeds, train, epochs, batch_size)
    base_s = sum(_run(task, [s], train, epochs, batch_size) for s in seeds)
    return {
        "ratio": base_s / jax_s,
        "baseline_s": base_s,
        "jaxroute_s": jax_s,
        "peak_mem_mb": _maxrss_mb(),
        "what": f"{k} EquiRouters x {epochs} epochs x {n_prompts} prompts: one vmap vs "
        f"{k} sequential runs",
    }


def bench_equirouter_head(n_prompts: int = 7300, epochs: int = 1, batch_size: int = 128) -> dict:
    """EquiRouter training with the folded head (fast) against the plain 2048-wide head."""
    train = jdata.synthetic(n_prompts=n_prompts, seed=0, feature_dim=384)
    fast = _run(_equirouter_task(train.num_models, fast=True), [0], train, epochs, batch_size)
    plain = _run(_equirouter_task(train.num_models, fast=False), [0], train, epochs, batch_size)
    return {
        "ratio": plain / fast,
        "baseline_s": plain,
        "jaxroute_s": fast,
        "peak_mem_mb": _maxrss_mb(),
        "what": f"EquiRouter {epochs} epoch(s) of {n_prompts} prompts, batch {batch_size}: "
        "plain head vs folded head",
    }
