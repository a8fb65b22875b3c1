"""The prompt-sharded sweep (the sweep of a multi-process run) on 8 devices of one process.

The checks run in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
(the test process keeps its own device count): the sharded sweeps must equal the
one-device sweeps bit for bit, with a prompt count that needs padding and one smaller
than the device count.
"""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # docs/testing.md


def _problem(n=203, m=5, r=3, seed=0):
    rng = np.random.default_rng(seed)
    q = (rng.random((n, m)) < 0.6).astype(np.float32)
    q[:, 2] = q[:, 1]  # exact ties, as in RouterBench
    c = (rng.random((n, m)) * 1e-3).astype(np.float32)
    s = rng.normal(size=(r, n, m)).astype(np.float32)
    pc = (c[None] * rng.uniform(0.5, 1.5, size=(r, n, m))).astype(np.float32)
    pc[0, :10] = pc[0, :10, :1]  # tied predicted costs
    budgets = np.quantile(pc, np.linspace(0, 1, 37)).astype(np.float32)
    budgets = np.concatenate([[-1.0], budgets])  # one budget where nothing is feasible
    return s, pc, q, c, budgets


def _same(ref, got):
    for a, b in zip(ref, got, strict=True):
        np.testing.assert_array_equal(a, b)


def _checks():
    import jax

    from jaxroute.routing import budget_sweep, lambda_sweep

    assert len(jax.devices()) == 8, jax.devices()
    s, pc, q, c, budgets = _problem()
    for method in ("events", "dense"):
        ref = budget_sweep(s, pc, q, c, budgets, method=method)
        got = budget_sweep(s, pc, q, c, budgets, method=method, shard="prompt")
        _same(ref, got)
        np.testing.assert_array_equal(np.rint(got.shares * len(q)).sum(-1), len(q))
    lambdas = np.concatenate([[0.0], np.geomspace(1e-2, 1e4, 21)])
    for method in ("events", "dense"):
        ref = lambda_sweep(s, pc, q, c, lambdas, method=method)
        _same(ref, lambda_sweep(s, pc, q, c, lambdas, method=method, shard="prompt"))
    s, pc, q, c, budgets = _problem(n=3, r=1)  # fewer prompts than devices
    _same(
        budget_sweep(s[0], pc[0], q, c, budgets),
        budget_sweep(s[0], pc[0], q, c, budgets, shard="prompt"),
    )
    print("sharded sweep checks passed")


def test_prompt_sharded_sweeps_equal_one_device_sweeps():
    # here: this file also runs as the subprocess's script
    from _apps import fake_devices_env, run_python

    # The suite's app environment (its compilation cache: the sweeps' programs are read,
    # not compiled again) with eight fake devices.
    out = run_python([os.path.abspath(__file__)], env=fake_devices_env(8), timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "sharded sweep checks passed" in out.stdout


if __name__ == "__main__":
    _checks()
