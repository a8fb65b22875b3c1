"""Splits (docs/method.md §6) and the split table. Epoch batches: ``jaxroute.train.epoch_indices``.

``SPLITS`` maps ``config.data.split`` to a :class:`SplitSpec` whose ``split(data, dc,
seed)`` returns ``(train, test)`` from the data config ``dc``:

- ``in_domain``: a seeded shuffle, the first ``dc.train_fraction`` as train.
- ``out_of_domain``: the tasks in ``dc.test_tasks`` (comma list) as test, the rest train.
- ``predefined``: the dataset's own train/test files (:func:`split_predefined`).
- ``leave_one_task_out``: the seed picks one task as test, the others train
  (:func:`split_leave_one_task_out`; seeds ``0 .. T-1`` hold out every task once).
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxroute.data._readers import WIDE_SUFFIXES, read_files
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


def split_leave_one_task_out(data: RoutingData, index: int) -> tuple[RoutingData, RoutingData]:
    """Holds out one whole task: the ``index``-th of the sorted task names (modulo their
    number) is the test part, every other task trains (docs/question_routing.md).

    Seeds ``0, 1, ..., T - 1`` hold out each of the ``T`` tasks once, so a run over them
    says what a router does on traffic from a subject it never saw. The parts differ in
    size from seed to seed, so only routers that are fitted per seed (kNN, ``taskprior``,
    ``irt``) can run on this split, not the ones vmapped over seeds.

    >>> from jaxroute.data import synthetic
    >>> d = synthetic(n_prompts=60, seed=0)
    >>> train, test = split_leave_one_task_out(d, 1)
    >>> sorted(set(test.tasks)) == [sorted(d.task_names)[1]], len(train) + len(test)
    (True, 60)
    """
    names = sorted(data.task_names)
    if len(names) < 2:
        raise DataError(f"{data.source}: leave-one-task-out needs two or more tasks, got {names}")
    return split_out_of_domain(data, [names[int(index) % len(names)]])


def split_seeds(
    data: RoutingData, seeds: Sequence[int], train_fraction: float = 0.2
) -> list[tuple[RoutingData, RoutingData]]:
    """One in-domain split per seed (K seeds, docs/method.md §6 uses 42-46)."""
    return [split_in_domain(data, train_fraction, s) for s in seeds]


def holdout(data: RoutingData, fraction: float, seed: int) -> tuple[RoutingData, RoutingData]:
    """Splits a validation part off a training split (for tuning without the test set)."""
    return split_in_domain(data, 1.0 - fraction, seed)


_PART = re.compile(r"(?:^|[_.-])(train|test)$", re.IGNORECASE)


def split_predefined(
    data: RoutingData, path: str, data_format: str = "auto", *, drop_incomplete: bool = False
) -> tuple[RoutingData, RoutingData]:
    """Keeps a dataset's own train/test files instead of re-splitting it.

    The rule: ``path`` is a folder of table files (wide or long form); a file whose name
    without suffix ends in ``train`` (``train.csv``, ``rb_train.pkl``, ``rb-train.parquet``)
    holds training rows, one ending in ``test`` test rows, and every file is one or the
    other. Each file is read on its own (so each must be a complete table), and the rows
    of ``data`` (the whole folder, as loaded) go to the part of the file their sample id
    came from; an id in both parts is an error.

    Returns:
      ``(train, test)`` in ``data``'s row order; the same for every seed.
    """
    folder = pathlib.Path(str(path)).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"{path}: the predefined split needs a folder of *_train / *_test table files"
        )
    ids: dict[str, set[str]] = {"train": set(), "test": set()}
    for f in sorted(folder.iterdir()):
        if not (f.is_file() and f.suffix in WIDE_SUFFIXES):
            continue
        m = _PART.search(f.stem)
        if m is None:
            raise DataError(f"{f}: predefined split: the file name must end in _train or _test")
        part = read_files(f, data_format, drop_incomplete=drop_incomplete)
        ids[m.group(1).lower()].update(part.sample_ids.tolist())
    for part in ("train", "test"):
        if not ids[part]:
            raise DataError(f"{folder}: predefined split: no *_{part} file")
    both = sorted(ids["train"] & ids["test"])
    if both:
        raise DataError(f"{folder}: predefined split: sample_id {both[0]!r} in train and test")
    in_train = np.isin(data.sample_ids, sorted(ids["train"]))
    in_test = np.isin(data.sample_ids, sorted(ids["test"]))
    if not (in_train | in_test).all():
        row = int(np.argmin(in_train | in_test))
        raise DataError(
            f"{folder}: predefined split: sample_id {data.sample_ids[row]!r} (row {row}) "
            "is in neither a train nor a test file"
        )
    return data.subset(np.flatnonzero(in_train)), data.subset(np.flatnonzero(in_test))


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """One way to split.

    Attributes:
      split: ``split(data, dc, seed) -> (train, test)``; ``dc`` is ``config.data``.
      seeded: the parts change with the seed (else every seed shares one split).
      description: one line.
    """

    split: Callable[[RoutingData, Any, int], tuple[RoutingData, RoutingData]]
    seeded: bool = True
    description: str = ""


def _test_tasks(dc) -> list[str]:
    return [t.strip() for t in str(dc.test_tasks).split(",") if t.strip()]


SPLITS: dict[str, SplitSpec] = {
    "in_domain": SplitSpec(
        lambda data, dc, seed: split_in_domain(data, dc.train_fraction, seed),
        description="seeded shuffle, first train_fraction as train",
    ),
    "out_of_domain": SplitSpec(
        lambda data, dc, seed: split_out_of_domain(data, _test_tasks(dc)),
        seeded=False,
        description="the test_tasks as test, the other tasks as train",
    ),
    "predefined": SplitSpec(
        lambda data, dc, seed: split_predefined(
            data, dc.path, dc.format, drop_incomplete=dc.drop_incomplete
        ),
        seeded=False,
        description="the dataset's own *_train / *_test files",
    ),
    "leave_one_task_out": SplitSpec(
        lambda data, dc, seed: split_leave_one_task_out(data, seed),
        description="the seed-th task (sorted, modulo T) as test, the other tasks as train",
    ),
}
