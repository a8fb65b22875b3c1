"""A real ``serve`` process with a bearer token: SIGTERM with requests in flight drains
them (every one answered, exit 0), and the token comes from a file, never from argv."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket

import aiohttp
import pytest
from _apps import run_app

pytestmark = pytest.mark.xdist_group("serving")
pytestmark = [pytestmark, pytest.mark.slow]  # docs/testing.md

TOKEN = "drain-test-token-0123"


def test_sigterm_drains_requests_in_flight(workdir, serve_process, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    proc = serve_process(
        workdir,
        "--budget=0.003",
        "--warm_lengths=32",
        "--max_prompts=16",
        "--max_batch=2",
        "--batch_window_ms=0",
        "--drain_grace_s=60",
        f"--auth_token_file={token_file}",
        "--host=127.0.0.1",
        log_dir=tmp_path,
    )
    url = proc.url
    host, port = url.removeprefix("http://").split(":")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    n = 24
    bodies = [{"prompts": [f"request {i} prompt {k}: what is {k} + {i}?" for k in range(8)]}
              for i in range(n)]  # fmt: skip

    async def go():
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            async with s.post(f"{url}/route", json=bodies[0]) as r:
                no_token = r.status

            async def one(body):
                async with s.post(f"{url}/route", json=body, headers=auth) as r:
                    return r.status, await r.read()

            reqs = [asyncio.ensure_future(one(b)) for b in bodies]
            for _ in range(500):  # until the server holds all 24 (96 encoder calls of 2)
                async with s.get(f"{url}/health", headers=auth) as r:
                    if (await r.json())["in_flight"] >= n + 1:  # + this /health
                        break
                await asyncio.sleep(0.01)
            proc.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            try:
                with socket.create_connection((host, int(port)), timeout=2):
                    late = "accepted"
            except OSError:
                late = "refused"
            return no_token, await asyncio.gather(*reqs), late

    no_token, out, late = asyncio.run(go())
    code = proc.proc.wait(90)
    err = proc.err()
    proc.stop()
    assert no_token == 401
    assert late == "refused"  # the listener closed at SIGTERM
    assert [st for st, _ in out] == [200] * n, err
    for body, (_, raw) in zip(bodies, out, strict=True):
        assert [r["prompt"] for r in json.loads(raw)] == body["prompts"]
    assert code == 0
    held = re.search(r"draining (\d+) requests in flight", err)
    assert held and int(held.group(1)) >= 1, err  # SIGTERM came with requests in flight
    assert "(0 answered 503)" in err
    assert TOKEN not in " ".join(proc.proc.args)  # never on the command line


def test_exposed_host_without_token_warns_and_token_errors_are_one_line(tmp_path):
    missing = tmp_path / "no_workdir"
    proc = run_app("serve", f"--workdir={missing}", "--host=0.0.0.0", "--budget=0.003")
    assert proc.returncode == 2  # the workdir is refused before anything listens
    warning = next(ln for ln in proc.stderr.splitlines() if ln.startswith("warning:"))
    assert "listening on 0.0.0.0 without a bearer token" in warning
    proc = run_app("serve", f"--workdir={missing}", "--auth_token_env=JAXROUTE_NO_SUCH_VAR")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: --auth_token_env: $JAXROUTE_NO_SUCH_VAR is not set or empty"
    )
    assert "warning:" not in proc.stderr  # loopback: no warning
    empty = tmp_path / "token"
    empty.write_text("\n")
    proc = run_app("serve", f"--workdir={missing}", f"--auth_token_file={empty}")
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --auth_token_file: {empty}: must hold the token on one line"
    )
