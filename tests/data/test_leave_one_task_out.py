"""The leave-one-task-out split: each seed holds out one whole task, seeds 0..T-1 each once."""

import ml_collections
import numpy as np
import pytest

from jaxroute.data import SPLITS, DataError, RoutingData
from jaxroute.data._splits import split_leave_one_task_out


def _data(tasks):
    n = len(tasks)
    rng = np.random.default_rng(0)
    return RoutingData(
        quality=rng.integers(0, 2, (n, 2)),
        cost=np.ones((n, 2)),
        models=["a", "b"],
        tasks=tasks,
        sample_ids=[f"s{i}" for i in range(n)],
        features=rng.normal(size=(n, 3)),
    )


TASKS = ["math", "code", "math", "qa", "code", "qa", "qa", "math"]


@pytest.mark.parametrize(
    "seed,held", [(0, "code"), (1, "math"), (2, "qa"), (3, "code"), (44, "qa")]
)
def test_the_seed_picks_the_task_of_that_sorted_position(seed, held):
    train, test = split_leave_one_task_out(_data(TASKS), seed)
    assert test.sample_ids.tolist() == [f"s{i}" for i, t in enumerate(TASKS) if t == held]
    assert train.sample_ids.tolist() == [f"s{i}" for i, t in enumerate(TASKS) if t != held]


def test_seeds_zero_to_t_minus_one_hold_out_every_task_once():
    d = _data(TASKS)
    held = [split_leave_one_task_out(d, s)[1].tasks[0] for s in range(3)]
    assert held == ["code", "math", "qa"]
    tested = np.concatenate([split_leave_one_task_out(d, s)[1].sample_ids for s in range(3)])
    assert sorted(tested.tolist()) == sorted(d.sample_ids.tolist())


def test_one_task_is_refused_naming_the_tasks():
    with pytest.raises(DataError, match=r"two or more tasks, got \['qa'\]"):
        split_leave_one_task_out(_data(["qa", "qa", "qa"]), 0)


def test_the_split_table_entry_uses_the_seed():
    spec = SPLITS["leave_one_task_out"]
    dc = ml_collections.ConfigDict({"train_fraction": 0.2, "test_tasks": ""})
    assert spec.seeded
    train, test = spec.split(_data(TASKS), dc, 2)
    assert set(test.tasks) == {"qa"} and set(train.tasks) == {"code", "math"}
