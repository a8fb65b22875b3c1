"""Benchmark: ``serve`` latency and throughput under concurrent clients vs ``route`` per call.

``bench_serve`` starts the real ``serve`` app on 127.0.0.1 (a free port), runs bounded
request loops on loopback with 1, 8 and 32 concurrent clients (each request one prompt,
``POST /route``), and times the baseline a user has without it: one ``python -m
jaxroute.launch.route`` process per request (load, compile, embed, route).

``fairness`` times a one-prompt request sent while another client's request of
``n_long`` long prompts is being routed, against the same request alone
(``docs/reliability_server.md``).
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import aiohttp
import numpy as np

from jaxroute import train
from jaxroute.configs import base

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tiny_config(val_fraction: float = 0.0):
    """The tiny MLP router on synthetic prompts with MiniLM features (serving's test run)."""
    c = base.get_config("tiny")
    c.data.path = "synthetic:n_prompts=300,feature_dim=8"
    c.features.source = "encoder"
    c.seeds = (0,)
    c.run_routers = "mlp"
    c.train.epochs = 2
    c.train.val_fraction = val_fraction
    return c


def tiny_workdir(path) -> pathlib.Path:
    """Trains :func:`tiny_config` into ``path`` (once)."""
    path = pathlib.Path(path)
    if not (path / "run_info.json").exists():
        train.fit(tiny_config(), path)
    return path


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _start_server(workdir, extra=(), timeout=600):
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxroute.launch.serve", f"--workdir={workdir}", "--port=0",
         "--budget=0.003", *extra],
        cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited with {proc.returncode}")
        log.seek(0)
        for line in log.read().splitlines():
            if line.startswith("serving on "):
                return proc, line.split()[2]
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"serve did not start within {timeout} s")


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _peak_rss_mb(pid) -> float | None:
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def _load(url, clients: int, per_client: int):
    lat = []
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as s:

        async def client(c):
            for i in range(per_client):
                body = {"prompts": [f"client {c} question {i}: what is {i} plus {c}?"]}
                t0 = time.perf_counter()
                async with s.post(f"{url}/route", json=body) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"/route answered {r.status}")
                lat.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        wall = time.perf_counter() - t0
    return np.asarray(lat), wall


async def _fairness(url, n_long: int, long_words: int, rounds: int):
    timeout = aiohttp.ClientTimeout(total=600)
    words = " ".join(f"word{i % 97}" for i in range(long_words))
    big = {"prompts": [f"long prompt {i}: {words}" for i in range(n_long)]}

    async with aiohttp.ClientSession(timeout=timeout) as s:

        async def one(body):
            t0 = time.perf_counter()
            async with s.post(f"{url}/route", json=body) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"/route answered {r.status}")
            return time.perf_counter() - t0

        alone, behind, long_s = [], [], []
        for i in range(rounds):
            alone.append(await one({"prompts": [f"short question {i}"]}))
            task = asyncio.ensure_future(one(big))
            await asyncio.sleep(0.2)  # the long request is being routed
            behind.append(await one({"prompts": [f"short question {i} again"]}))
            long_s.append(await task)
    return {
        "n_long": n_long,
        "short_alone_ms": float(np.median(alone) * 1e3),
        "short_behind_long_ms": float(np.max(behind) * 1e3),
        "long_request_s": float(np.median(long_s)),
    }


def fairness(workdir, *, n_long=256, long_words=200, rounds=3, extra=()) -> dict:
    """The worst wait of a one-prompt request sent 0.2 s after a request of ``n_long``
    prompts of ``long_words`` words each (``short_behind_long_ms``, max over ``rounds``),
    beside the same request alone and the long request's own time."""
    proc, url = _start_server(workdir, extra)
    try:
        asyncio.run(_load(url, 1, 2))
        return asyncio.run(_fairness(url, n_long, long_words, rounds))
    finally:
        _stop(proc)


def bench_serve(
    workdir=None,
    *,
    concurrency=(1, 8, 32),
    requests=64,
    route_calls: int = 2,
    quick: bool = False,
) -> dict:
    """p50 / p99 latency and throughput of ``serve`` at each concurrency, and the baseline.

    Args:
      workdir: a trained workdir with encoder features (default: a tiny one, trained in
        a temporary folder).
      concurrency: numbers of concurrent clients.
      requests: requests per concurrency level (split evenly over the clients).
      route_calls: ``route`` processes timed for the baseline.
      quick: fewer requests and one ``route`` call (a smoke run).

    Returns:
      dict with ``ratio`` (route-per-request seconds / serve p50 at one client),
      ``baseline_s`` (one ``route`` call), ``jaxroute_s`` (serve p50, one client),
      ``startup_s``, ``levels`` (per concurrency: ``p50_ms``, ``p99_ms``, ``req_per_s``),
      ``peak_mem_mb`` (the server's peak RSS).
    """
    if quick:
        requests, route_calls = 16, 1
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="jaxroute_bench_serve_")
        workdir = tiny_workdir(pathlib.Path(tmp.name) / "w")
    try:
        t0 = time.perf_counter()
        proc, url = _start_server(workdir)
        startup = time.perf_counter() - t0
        levels = {}
        try:
            asyncio.run(_load(url, 1, 4))  # first requests after start
            for c in concurrency:
                per = max(1, requests // c)
                lat, wall = asyncio.run(_load(url, c, per))
                levels[str(c)] = {
                    "clients": c,
                    "requests": int(lat.size),
                    "p50_ms": float(np.percentile(lat, 50) * 1e3),
                    "p99_ms": float(np.percentile(lat, 99) * 1e3),
                    "req_per_s": float(lat.size / wall),
                }
            peak = _peak_rss_mb(proc.pid)
        finally:
            _stop(proc)
        route_s = []
        for i in range(route_calls):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "jaxroute.launch.route", f"--workdir={workdir}",
                 "--budget=0.003", f"question {i}: what is 2 plus 2?"],
                cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=600,
            )  # fmt: skip
            route_s.append(time.perf_counter() - t0)
    finally:
        if tmp is not None:
            tmp.cleanup()
    one = levels[str(concurrency[0])]["p50_ms"] / 1e3
    baseline = float(np.median(route_s))
    return {
        "what": "route per request (a process) / serve p50 at one client, POST /route",
        "ratio": baseline / one,
        "baseline_s": baseline,
        "jaxroute_s": one,
        "startup_s": startup,
        "levels": levels,
        "peak_mem_mb": peak,
    }


__all__ = ["bench_serve", "fairness", "tiny_workdir"]
