"""The ``serve`` app's HTTP server: routing as a service next to OpenAI-compatible LLMs.

Built on aiohttp: one well-kept package (aio-libs, asyncio-native) gives the server, the
client that forwards chat requests to the backends (with bounded timeouts), and byte
streaming in both directions, so streamed completions pass through as they arrive.

The workdir's router is loaded once and compiled for a few batch shapes at start
(:meth:`TrainedRouter.warmup`). Concurrent requests are micro-batched: handlers put
their prompts on an asyncio queue; one batcher task waits ``batch_window`` for more,
runs the encoder and the two networks once for all of them in a worker thread (the
event loop keeps accepting connections), and hands each request its rows. The encoder
cuts a batch into full batches per token bucket and a power-of-two remainder; all those
shapes are compiled at start.

Endpoints: ``POST /route``, ``POST /v1/chat/completions``, ``GET /health``,
``GET /models``. Every error is a 4xx/5xx with a one-line JSON body
``{"error": {"message", "type", "code"}}``; no traceback reaches a client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import pathlib
import time
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from jaxroute.routing import budget_choice, lambda_choice
from jaxroute.serving.router import POLICY_FIELDS, Policy, TrainedRouter, check_prompts

log = logging.getLogger("jaxroute.serve")

ROUTED_NAMES = (None, "auto", "jaxroute", "router")  # chat "model" values that mean: route


class ApiError(Exception):
    """An error answered to the client: HTTP status and a one-line message."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())
        self.kind = kind


def error_response(status: int, message: str, kind: str) -> web.Response:
    body = {"error": {"message": " ".join(str(message).split()), "type": kind, "code": status}}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


# --------------------------------------------------------------------------- models file


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible backend serving one model."""

    base_url: str
    api_key_env: str | None = None
    model: str | None = None  # the name the backend knows the model by (default: ours)


def read_models_file(path, known_models) -> dict[str, Endpoint]:
    """``{name: {"base_url", "api_key_env"?, "model"?}}``, validated (names file and field)."""
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such models file")
    try:
        obj = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not JSON ({e})") from None
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{p}: must be a non-empty JSON object: model name -> endpoint")
    out = {}
    for name, entry in obj.items():
        where = f"{p}: model '{name}'"
        if name not in known_models:
            raise ValueError(f"{where} is not a model of the router: {list(known_models)}")
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object with 'base_url'")
        extra = set(entry) - {"base_url", "api_key_env", "model"}
        if extra:
            raise ValueError(f"{where}: unknown fields {sorted(extra)}")
        url = entry.get("base_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"{where}: field 'base_url' must be an http(s) URL, got {url!r}")
        env = entry.get("api_key_env")
        if env is not None and (not isinstance(env, str) or not env):
            raise ValueError(f"{where}: field 'api_key_env' must be a variable name")
        if env is not None and env not in os.environ:
            raise ValueError(f"{where}: field 'api_key_env' names ${env}, which is not set")
        alias = entry.get("model")
        if alias is not None and not isinstance(alias, str):
            raise ValueError(f"{where}: field 'model' must be a string")
        out[name] = Endpoint(url.rstrip("/"), env, alias)
    return out


# --------------------------------------------------------------------------- batching


@dataclasses.dataclass
class _Item:
    prompts: list[str]
    future: asyncio.Future


class Batcher:
    """Collects prompts from concurrent requests into one encoder + router call."""

    def __init__(self, router: TrainedRouter, *, window_s: float = 0.005, max_batch: int = 32):
        self.router = router
        self.window_s = window_s
        self.max_batch = max_batch
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="encoder")
        self.batches = 0
        self.prompts = 0
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, prompts: list[str]):
        """``(scores, costs, truncated)`` for ``prompts``, computed with other requests'."""
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put(_Item(prompts, fut))
        return await fut

    def compute(self, prompts: list[str]):
        x, truncated = self.router.embed(prompts, batch_size=self.max_batch)
        scores, costs = self.router.scores_and_costs(x)
        return scores, costs, truncated

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            n = len(items[0].prompts)
            deadline = loop.time() + self.window_s
            while n < self.max_batch:
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self.queue.get(), left)
                except TimeoutError:
                    break
                items.append(item)
                n += len(item.prompts)
            items = [it for it in items if not it.future.done()]  # clients gone
            if not items:
                continue
            prompts = [p for it in items for p in it.prompts]
            try:
                scores, costs, truncated = await loop.run_in_executor(
                    self.executor, self.compute, prompts
                )
            except Exception as e:  # noqa: BLE001 - answered to each waiting request
                log.exception("encoder batch failed")
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(ApiError(500, f"routing failed: {e}", "server"))
                continue
            self.batches += 1
            self.prompts += len(prompts)
            start = 0
            for it in items:
                k = len(it.prompts)
                if not it.future.done():
                    it.future.set_result(
                        (
                            scores[start : start + k],
                            costs[start : start + k],
                            truncated[start : start + k],
                        )
                    )
                start += k


# --------------------------------------------------------------------------- the app


@dataclasses.dataclass
class ServeConfig:
    """Server settings (the ``serve`` app's flags)."""

    default_policy: dict = dataclasses.field(default_factory=dict)
    endpoints: dict[str, Endpoint] = dataclasses.field(default_factory=dict)
    max_prompts: int = 256
    max_prompt_chars: int = 100_000
    backend_timeout_s: float = 60.0
    backend_connect_timeout_s: float = 10.0
    batch_window_s: float = 0.005
    max_batch: int = 32
    max_body_bytes: int = 8 << 20


class RouterService:
    """The state behind the handlers: router, batcher, backend client, settings."""

    def __init__(self, router: TrainedRouter, cfg: ServeConfig):
        self.router = router
        self.cfg = cfg
        self.batcher = Batcher(router, window_s=cfg.batch_window_s, max_batch=cfg.max_batch)
        self.session: aiohttp.ClientSession | None = None
        self.started = time.time()
        self.available = [i for i, m in enumerate(router.models) if m in cfg.endpoints]
        if cfg.default_policy:
            router.policy(cfg.default_policy)  # fail at start, not on the first request

    # ------------------------------------------------------------------ helpers
    async def _json_body(self, request: web.Request) -> dict:
        try:
            body = await request.json()
        except json.JSONDecodeError as e:
            raise ApiError(400, f"request body is not JSON ({e})") from None
        except UnicodeDecodeError:
            raise ApiError(400, "request body is not UTF-8 text") from None
        if not isinstance(body, dict):
            raise ApiError(400, f"request body must be a JSON object, got {type(body).__name__}")
        return body

    def _policy(self, spec: dict) -> Policy:
        given = {k: spec[k] for k in (*POLICY_FIELDS, "rule", "model") if k in spec}
        if not any(k in given for k in POLICY_FIELDS):
            if not self.cfg.default_policy:
                raise ApiError(
                    400,
                    f"no routing policy: give one of {', '.join(POLICY_FIELDS)} (the server "
                    "was started without a default)",
                )
            given = {**self.cfg.default_policy, **given}
        try:
            return self.router.policy(given)
        except ValueError as e:
            raise ApiError(400, str(e)) from None

    def _check_prompts(self, prompts) -> list[str]:
        if isinstance(prompts, list) and len(prompts) > self.cfg.max_prompts:
            raise ApiError(413, f"{len(prompts)} prompts, more than {self.cfg.max_prompts}")
        try:
            return check_prompts(prompts, max_chars=self.cfg.max_prompt_chars)
        except ValueError as e:
            status = 413 if "characters, more than" in str(e) else 400
            raise ApiError(status, str(e)) from None

    # ------------------------------------------------------------------ handlers
    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "router": self.router.name,
                "seed": self.router.seed,
                "workdir": self.router.workdir,
                "batches": self.batcher.batches,
                "prompts": self.batcher.prompts,
                "uptime_s": round(time.time() - self.started, 3),
            }
        )

    async def models(self, request: web.Request) -> web.Response:
        data = [
            {
                "id": m,
                "object": "model",
                "owned_by": "jaxroute",
                "endpoint": m in self.cfg.endpoints,
            }
            for m in self.router.models
        ]
        return web.json_response({"object": "list", "router": self.router.name, "data": data})

    async def route(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        if "prompts" not in body:
            raise ApiError(400, "missing field 'prompts' (a list of strings)")
        prompts = self._check_prompts(body["prompts"])
        policy = self._policy(body)
        scores, costs, truncated = await self.batcher.submit(prompts)
        rows = self.router.decide(prompts, scores, costs, policy, truncated)
        return web.json_response(rows)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        if not self.cfg.endpoints:
            raise ApiError(
                503, "no models file: start serve with --models_file to forward chats", "server"
            )
        prompt = last_user_message(body.get("messages"))
        self._check_prompts([prompt])
        extra = body.get("jaxroute", {})
        if not isinstance(extra, dict):
            raise ApiError(400, "field 'jaxroute' must be an object of routing fields")
        policy = self._policy(extra)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, f"field 'stream' must be true or false, got {stream!r}")
        asked = body.get("model")
        if asked is not None and not isinstance(asked, str):
            raise ApiError(400, f"field 'model' must be a string, got {type(asked).__name__}")
        if asked in ROUTED_NAMES or asked == self.router.name:
            scores, costs, _ = await self.batcher.submit([prompt])
            name = self.router.models[self._choose_available(scores[0], costs[0], policy)]
        elif asked in self.cfg.endpoints:  # the client names a model: no routing
            name = asked
        elif isinstance(asked, str) and asked in self.router.models:
            raise ApiError(400, f"model '{asked}' has no endpoint in the models file")
        else:
            raise ApiError(
                400,
                f"unknown model {asked!r}: use 'auto' (routed by {self.router.name}) or "
                "one of GET /models",
            )
        forward = {k: v for k, v in body.items() if k != "jaxroute"}
        endpoint = self.cfg.endpoints[name]
        forward["model"] = endpoint.model or name
        return await self._forward(request, name, endpoint, forward, stream)

    def _choose_available(self, scores, costs, policy: Policy) -> int:
        """The rule's choice among the models that have an endpoint."""
        idx = np.asarray(self.available)
        s, c = scores[None, idx], costs[None, idx]
        fn = budget_choice if policy.rule == "budget" else lambda_choice
        return int(idx[int(np.asarray(fn(s, c, np.float32(policy.parameter)))[0])])

    async def _forward(self, request, name, endpoint: Endpoint, body, stream):
        url = endpoint.base_url + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if endpoint.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(endpoint.api_key_env, '')}"
        t = self.cfg.backend_timeout_s
        timeout = aiohttp.ClientTimeout(
            total=None if stream else t,
            connect=min(self.cfg.backend_connect_timeout_s, t),
            sock_read=t,
        )
        tag = {"x-jaxroute-model": name}
        out = None
        try:
            async with self.session.post(url, json=body, headers=headers, timeout=timeout) as r:
                if r.status >= 400:
                    text = (await r.text(errors="replace"))[:300]
                    status = 502 if r.status >= 500 else r.status
                    raise ApiError(
                        status, f"backend for model '{name}' answered {r.status}: {text}", "backend"
                    )
                if not stream:
                    try:
                        data = await r.json(content_type=None)
                    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
                        raise ApiError(
                            502, f"backend for model '{name}' answered non-JSON", "backend"
                        ) from None
                    if not isinstance(data, dict):
                        raise ApiError(
                            502, f"backend for model '{name}' answered a non-object", "backend"
                        )
                    data["model"] = name
                    return web.json_response(data, headers=tag)
                out = web.StreamResponse(
                    status=200,
                    headers={
                        **tag,
                        "Content-Type": r.headers.get("Content-Type", "text/event-stream"),
                        "Cache-Control": "no-cache",
                    },
                )
                await out.prepare(request)
                buf = b""
                async for chunk in r.content.iter_any():
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    if lines:
                        await out.write(b"".join(_rename(ln, name) + b"\n" for ln in lines))
                if buf:
                    await out.write(_rename(buf, name))
                await out.write_eof()
                return out
        except ConnectionResetError as e:  # after the stream began: our client left
            if out is None:
                msg = f"backend for model '{name}' at {endpoint.base_url} failed: {e}"
                raise ApiError(502, msg, "backend") from None
            return out
        except TimeoutError:
            msg = f"backend for model '{name}' did not answer within {t:g} s"
            if out is None:
                raise ApiError(504, msg, "backend") from None
            return await _end_stream(out, msg)
        except aiohttp.ClientError as e:
            msg = f"backend for model '{name}' at {endpoint.base_url} failed: {e}"
            if out is None:
                raise ApiError(502, msg, "backend") from None
            return await _end_stream(out, msg)


def _rename(line: bytes, name: str) -> bytes:
    """An SSE ``data: {...}`` line with the chosen model's name in ``model``."""
    if not line.startswith(b"data:"):
        return line
    payload = line[5:].strip()
    if not payload or payload == b"[DONE]":
        return line
    try:
        obj = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return line
    if not isinstance(obj, dict) or "model" not in obj:
        return line
    obj["model"] = name
    return b"data: " + json.dumps(obj).encode()


async def _end_stream(out: web.StreamResponse, message: str) -> web.StreamResponse:
    """A stream already started cannot change its status: an SSE error event ends it."""
    err = {"error": {"message": message, "type": "backend", "code": 504}}
    try:
        await out.write(b"data: " + json.dumps(err).encode() + b"\n\n")
        await out.write_eof()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass
    return out


def last_user_message(messages: Any) -> str:
    """The text of the last ``role: user`` message (string or text content parts)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "field 'messages' must be a non-empty list")
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if not isinstance(m, dict):
            raise ApiError(400, f"messages[{i}] must be an object")
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [
                p.get("text", "")
                for p in content
                if isinstance(p, dict)
                and p.get("type") == "text"
                and isinstance(p.get("text"), str)
            ]
            if parts:
                return "\n".join(parts)
        raise ApiError(400, f"messages[{i}].content has no text")
    raise ApiError(400, "no message with role 'user' in 'messages'")


@web.middleware
async def _errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.message, e.kind)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(e.status, e.reason if not e.text else e.text, "http")
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - logged here, one line to the client
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, f"internal error: {type(e).__name__}: {e}", "server")


def make_app(service: RouterService) -> web.Application:
    app = web.Application(middlewares=[_errors], client_max_size=service.cfg.max_body_bytes)
    app.router.add_get("/health", service.health)
    app.router.add_get("/models", service.models)
    app.router.add_get("/v1/models", service.models)
    app.router.add_post("/route", service.route)
    app.router.add_post("/v1/chat/completions", service.chat)

    async def on_startup(_):
        service.batcher.start()
        service.session = aiohttp.ClientSession()

    async def on_cleanup(_):
        await service.batcher.stop()
        if service.session is not None:
            await service.session.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


async def serve_forever(service: RouterService, host: str, port: int, ready=None) -> None:
    """Listens until SIGINT / SIGTERM; ``ready(url)`` is called once listening."""
    import signal

    runner = web.AppRunner(
        make_app(service), access_log=None, handle_signals=False, shutdown_timeout=5.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    h, p = runner.addresses[0][:2]
    url = f"http://{h}:{p}" if ":" not in h else f"http://[{h}]:{p}"
    if ready is not None:
        ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


__all__ = [
    "ApiError",
    "Batcher",
    "Endpoint",
    "RouterService",
    "ServeConfig",
    "last_user_message",
    "make_app",
    "read_models_file",
    "serve_forever",
]
