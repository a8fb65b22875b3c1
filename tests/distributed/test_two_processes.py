"""Two real OS processes on JAX's multi-process runtime train, get killed, resume, report.

What runs: ``python -m jaxroute.launch.train`` twice at once with
``--config.devices.distributed=True`` and ``JAX_COORDINATOR_ADDRESS`` /
``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID`` (one CPU device each, coordinator on
127.0.0.1 at a free port, cross-process collectives through gloo). Both are SIGKILLed
once the EquiRouter group has checkpointed its first epoch, and started again: they
resume from orbax's multi-process checkpoints. The reference, a plain one-process
training of the same config, runs in the test's own process (``fit``: the checkpoints,
no report) while the resumed pair trains.

Asserted:
- both processes exit 0 and print the same headline; only process 0 writes
  (one report.json, each metrics line once);
- the final parameters equal the one-process run's within ``RTOL``/``ATOL``: the global
  batch is the same, but its mean is summed as two 16-row halves plus a cross-process
  all-reduce instead of 32 rows on one device, which moves float32 gradients by a few
  ulps (~1e-7 relative); 3 epochs of Adam (lr 1e-3, 9 steps) carry that into the
  parameters at about 6e-8 absolute and 2e-6 relative (measured 2026-12-02), so the
  bounds below leave ~15x headroom and still catch any real difference (a skipped or
  duplicated batch moves parameters by ~1e-3);
- the sweep of the two-process run (prompts split over the processes, exact limb sums
  reduced across them) gives the report a one-process ``evaluate`` of the same
  checkpoints gives: identical curves and metrics.

Every started process is killed in ``finally``; each phase has a timeout.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import jax
import numpy as np
import pytest
from _apps import ALL_CPUS, app_env, start_python

from jaxroute.configs.base import get_config
from jaxroute.train import experiment as E

pytestmark = pytest.mark.slow  # docs/testing.md

RTOL, ATOL = 1e-5, 1e-6
PHASE_TIMEOUT_S = 300  # hang guard; the whole test takes well under 2 minutes on 2 idle cores
FLAGS = [
    "--config=jaxroute/configs/base.py:tiny",
    "--config.run_routers=equirouter",
    "--config.eval.n_budgets=10",
]


def _reference_config():
    """The config FLAGS give, for the one-process reference."""
    c = get_config("tiny")
    c.run_routers = "equirouter"
    c.eval.n_budgets = 10
    return c


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(workdir, log, procs, **env):
    """One ``train`` process in the app environment (one CPU device, the suite's flags and
    persistent compilation cache: the resumed pair reads what the killed pair compiled)
    plus ``env``, in its own session; forked where the harness can (tests/_apps.py)."""
    args = ["-m", "jaxroute.launch.train", *FLAGS, f"--workdir={workdir}"]
    if "JAX_PROCESS_ID" in env:
        args.append("--config.devices.distributed=True")
    p = start_python(
        args, env={**app_env(), **env}, stdout=log, stderr=subprocess.STDOUT, new_session=True,
        cpus=ALL_CPUS,  # the pair waits on each other every step: not on one core
    )  # fmt: skip
    procs.append(p)
    return p


def _start_pair(workdir, tag, procs) -> list:
    port = _free_port()
    common = {
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
        "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}",
        "JAX_NUM_PROCESSES": "2",
    }
    return [
        _start(workdir, workdir.parent / f"{tag}{i}.log", procs, JAX_PROCESS_ID=str(i), **common)
        for i in range(2)
    ]


def _kill(p) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=10)


def _wait(ps, deadline, logs) -> None:
    for p, log in zip(ps, logs, strict=True):
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"timed out; log tail:\n{pathlib.Path(log).read_text()[-3000:]}")
        assert rc == 0, f"exit {rc}; log tail:\n{pathlib.Path(log).read_text()[-3000:]}"


def _headline(log) -> str:
    lines = pathlib.Path(log).read_text().splitlines()
    return "\n".join(line for line in lines if line.startswith("|"))


def _params(workdir, name):
    config = E.read_config(workdir)
    info = json.loads((pathlib.Path(workdir) / "run_info.json").read_text())
    rc = config.cost_model if name == E.COST_GROUP else config.routers[name]
    offset = E.COST_SEED_OFFSET if name == E.COST_GROUP else 0
    _, params = E.trained_group(
        name,
        rc,
        config,
        info["seeds"],
        info["feature_dim"],
        len(info["models"]),
        info["n_train"],
        workdir,
        offset=offset,
    )
    return jax.tree.leaves(jax.tree.map(np.asarray, params))


def test_two_processes_train_resume_and_report_like_one(tmp_path):
    mp, ref = tmp_path / "two", tmp_path / "one"
    procs = []  # subprocess.Popen or _apps.ForkedProcess
    try:
        # Run 1: killed (SIGKILL, both processes) after the first EquiRouter checkpoint.
        first = _start_pair(mp, "killed", procs)
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        marker = mp / "checkpoints" / "equirouter" / "1"
        while not marker.exists():
            assert all(p.poll() is None for p in first), (tmp_path / "killed0.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint before the timeout"
            time.sleep(0.02)
        for p in first:
            _kill(p)
        assert not (mp / "report.json").exists(), "the killed run finished before the kill"
        # Run 2: the same command resumes from the multi-process checkpoints.
        second = _start_pair(mp, "resumed", procs)
        logs = [tmp_path / "resumed0.log", tmp_path / "resumed1.log"]
        # Meanwhile the one-process reference (this process: one CPU device).
        assert jax.process_count() == 1 and len(jax.devices()) == 1
        E.fit(_reference_config(), ref)
        _wait(second, time.monotonic() + PHASE_TIMEOUT_S, logs)
    finally:
        for p in procs:
            _kill(p)

    text = [log.read_text() for log in logs]
    assert "resumed from epoch" in text[0]
    assert "Gloo" in text[0] or "gloo" in text[0].lower()  # cross-process collectives ran
    # One writer: process 0 wrote the report; process 1 printed the same headline.
    assert (mp / "report.json").exists()
    assert "written by JAX process 0" in text[1]
    assert _headline(logs[0]) and _headline(logs[0]) == _headline(logs[1])
    records = [json.loads(line) for line in (mp / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["router"], r["epoch"]) for r in records]
    assert sorted(set(keys)) == sorted(keys)  # each epoch logged once
    assert {k for k in keys if k[0] == "equirouter"} == {("equirouter", e) for e in (1, 2, 3)}

    # Parameters: the one-process run's, up to float32 summation order.
    assert E.read_config(ref).to_dict() == {
        **E.read_config(mp).to_dict(),
        "devices": {**E.read_config(mp).devices.to_dict(), "distributed": False},
    }  # the same config apart from the multi-process flag
    for name in (E.COST_GROUP, "equirouter"):
        for a, b in zip(_params(mp, name), _params(ref, name), strict=True):
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=name)

    # Sweep: a one-process evaluation of the same checkpoints gives the same report.
    two = json.loads((mp / "report.json").read_text())
    one = E.evaluate(E.read_config(mp), mp, output_dir=tmp_path / "one_eval")
    one = json.loads(pathlib.Path(one["paths"]["json"]).read_text())
    assert two["routers"]["equirouter"]["curve"] == one["routers"]["equirouter"]["curve"]
    assert two == one
