"""The main job on one process and on two (same total devices): the multi-process overhead.

Both runs are fresh ``python -m jaxroute.launch.train`` processes in new workdirs with the
same total device count: one process with 2 CPU devices
(``--xla_force_host_platform_device_count=2``, the one-process data-parallel path) and two
processes with one CPU device each on 127.0.0.1 (``jax.distributed``, process-local batch
shards, multi-process orbax, prompt-sharded sweep). Each time is wall clock from start to
the last exit, start-up and compilation included, with the feature cache warm.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAIN_JOB = ["--flagfile=launch/equirouter_synthetic.flags"]
TINY_JOB = ["--config=jaxroute/configs/base.py:tiny"]


def _env(**extra) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH")] if p)
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _run(cmds_envs, logdir: pathlib.Path, tag: str, timeout_s: float) -> float:
    t0 = time.perf_counter()
    procs = []
    try:
        for i, (cmd, env) in enumerate(cmds_envs):
            with open(logdir / f"{tag}{i}.log", "w") as log:
                procs.append(
                    subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                )
        for i, p in enumerate(procs):
            rc = p.wait(timeout=max(1.0, timeout_s - (time.perf_counter() - t0)))
            if rc:
                tail = (logdir / f"{tag}{i}.log").read_text()[-2000:]
                raise RuntimeError(f"{tag} process {i} exited {rc}:\n{tail}")
        return time.perf_counter() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def bench_multiprocess(quick: bool = False, timeout_s: float = 3600) -> dict:
    """Wall time of the main job (``--quick``: the tiny config) on 1 process x 2 devices
    (baseline) and 2 processes x 1 device; ``ratio`` = baseline / two-process time."""
    job = TINY_JOB if quick else MAIN_JOB
    train = [sys.executable, "-m", "jaxroute.launch.train", *job]
    with tempfile.TemporaryDirectory(prefix="jaxroute-mp-bench-") as tmp:
        tmp = pathlib.Path(tmp)
        if not quick:  # warm the feature cache: neither timed run embeds the prompts
            flagfile = (ROOT / MAIN_JOB[0].split("=", 1)[1]).read_text().splitlines()
            data = next(x.split("=", 1)[1] for x in flagfile if x.startswith("--config.data.path"))
            embed = [sys.executable, "-m", "jaxroute.launch.embed", f"--data_path={data}"]
            _run([(embed + [f"--output={tmp / 'features.npy'}"], _env())], tmp, "embed", timeout_s)
        one = _run(
            [
                (
                    train + [f"--workdir={tmp / 'one'}"],
                    _env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
                )
            ],
            tmp,
            "one",
            timeout_s,
        )
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        addr = f"127.0.0.1:{port}"
        two = _run(
            [
                (
                    train + [f"--workdir={tmp / 'two'}", "--config.devices.distributed=True"],
                    _env(
                        JAX_COORDINATOR_ADDRESS=addr,
                        JAX_COORDINATOR_BIND_ADDRESS=addr,
                        JAX_NUM_PROCESSES="2",
                        JAX_PROCESS_ID=str(i),
                    ),
                )
                for i in range(2)
            ],
            tmp,
            "two",
            timeout_s,
        )
        same = (tmp / "one" / "report.json").read_text() == (
            tmp / "two" / "report.json"
        ).read_text()
    return {
        "ratio": round(one / two, 3),
        "baseline_s": round(one, 2),
        "jaxroute_s": round(two, 2),
        "reports_identical": same,
        "what": f"{'tiny config' if quick else 'main job (make run)'}: 1 process x 2 CPU devices "
        "(baseline) vs 2 processes x 1 device (jax.distributed), wall clock incl. start-up",
    }
