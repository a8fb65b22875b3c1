"""Splits (METHOD.md §6). Epoch batches: ``jaxroute.train.epoch_indices``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxroute.data._types import DataError, RoutingData


def split_in_domain(
    data: RoutingData, train_fraction: float = 0.2, seed: int = 42
) -> tuple[RoutingData, RoutingData]:
    """Shuffles the prompts with ``seed`` and takes the first fraction as train.

    The default (seed 42, 20% train) is ORBIT's RouterBench protocol; ``0.8`` gives the
    80/20 protocol. Train and test are disjoint and together cover every prompt.

    >>> from jaxroute.data import synthetic
    >>> train, test = split_in_domain(synthetic(n_prompts=100, seed=0))
    >>> len(train), len(test)
    (20, 80)
    """
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n = data.num_prompts
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(round(train_fraction * n))
    if n_train < 1 or n_train >= n:
        raise DataError(f"{data.source}: {n} prompts are too few for a {train_fraction} split")
    return data.subset(perm[:n_train]), data.subset(perm[n_train:])


def split_out_of_domain(
    data: RoutingData, test_tasks: Sequence[str]
) -> tuple[RoutingData, RoutingData]:
    """Holds out whole tasks: train on the others, test on ``test_tasks``."""
    test_tasks = list(test_tasks)
    unknown = sorted(set(test_tasks) - set(data.task_names))
    if unknown:
        raise DataError(f"{data.source}: unknown test tasks {unknown}; known {data.task_names}")
    in_test = np.isin(data.tasks, test_tasks)
    if in_test.all():
        raise DataError(f"{data.source}: holding out {test_tasks} leaves no training task")
    return data.subset(~in_test), data.subset(in_test)


def split_seeds(
    data: RoutingData, seeds: Sequence[int], train_fraction: float = 0.2
) -> list[tuple[RoutingData, RoutingData]]:
    """One in-domain split per seed (K seeds, METHOD.md §6 uses 42-46)."""
    return [split_in_domain(data, train_fraction, s) for s in seeds]


def holdout(data: RoutingData, fraction: float, seed: int) -> tuple[RoutingData, RoutingData]:
    """Splits a validation part off a training split (for tuning without the test set)."""
    return split_in_domain(data, 1.0 - fraction, seed)
