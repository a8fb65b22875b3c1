"""The ``serve`` app's HTTP server: routing as a service next to OpenAI-compatible LLMs.

Built on aiohttp: one well-kept package (aio-libs, asyncio-native) gives the server, the
client that forwards chat requests to the backends (:mod:`jaxroute.serving.backends`),
and byte streaming in both directions.

The workdir's router is loaded once and compiled for a few batch shapes at start
(:meth:`TrainedRouter.warmup`); concurrent requests are micro-batched, fairly
(:mod:`jaxroute.serving.batcher`). Requests are checked before they are batched
(:mod:`jaxroute.serving.requests`); connections, rates, the optional bearer token and
the graceful drain on SIGTERM are :mod:`jaxroute.serving.guard`'s. What each of those
holds against is measured in ``docs/reliability_server.md``.

Endpoints: ``POST /route``, ``POST /v1/chat/completions``, ``GET /health``,
``GET /models``. Every error is a 4xx/5xx with a one-line JSON body
``{"error": {"message", "type", "code"}}``; no traceback, backend URL or key reaches a
client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time

import aiohttp
import numpy as np
from aiohttp import web

from jaxroute.routing import get_rule
from jaxroute.serving import guard as G
from jaxroute.serving.backends import Endpoint, forward, read_models_file
from jaxroute.serving.batcher import Batcher
from jaxroute.serving.requests import (
    ApiError,
    encoder_prompts,
    error_response,
    last_user_message,
    read_json_object,
)
from jaxroute.serving.router import POLICY_FIELDS, Policy, TrainedRouter

log = logging.getLogger("jaxroute.serve")

ROUTED_NAMES = (None, "auto", "jaxroute", "router")  # chat "model" values that mean: route
OPEN_PATHS = frozenset({"/health"})  # not rate limited


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
    max_batch_chars: int = 4096
    max_body_bytes: int = 8 << 20
    max_json_depth: int = 32
    max_connections: int = 512
    max_connections_per_client: int = 128
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    body_timeout_s: float = 30.0
    rate_per_s: float = 0.0  # per client address; 0: no limit
    rate_burst: int = 0  # 0: twice the rate (at least 1)
    drain_grace_s: float = 10.0
    auth_token: str | None = dataclasses.field(default=None, repr=False)


class RouterService:
    """The state behind the handlers: router, batcher, backend client, settings."""

    def __init__(self, router: TrainedRouter, cfg: ServeConfig):
        self.router = router
        self.cfg = cfg
        self.batcher = Batcher(
            router,
            window_s=cfg.batch_window_s,
            max_batch=cfg.max_batch,
            max_chars=cfg.max_batch_chars,
        )
        self.limiter = G.RateLimiter(cfg.rate_per_s, cfg.rate_burst or int(2 * cfg.rate_per_s))
        self.drain = G.Drain(cfg.drain_grace_s)
        self.guard: G.ConnectionGuard | None = None
        self.session: aiohttp.ClientSession | None = None
        self.started = time.time()
        self.available = [i for i, m in enumerate(router.models) if m in cfg.endpoints]
        if cfg.default_policy:
            router.policy(cfg.default_policy)  # fail at start, not on the first request

    # ------------------------------------------------------------------ helpers
    async def _json_body(self, request: web.Request) -> dict:
        return await read_json_object(
            request, max_depth=self.cfg.max_json_depth, timeout_s=self.cfg.body_timeout_s
        )

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

    def _prompts(self, prompts) -> list[str]:
        return encoder_prompts(
            prompts, max_prompts=self.cfg.max_prompts, max_chars=self.cfg.max_prompt_chars
        )

    # ------------------------------------------------------------------ handlers
    async def health(self, request: web.Request) -> web.Response:
        g = self.guard
        return web.json_response(
            {
                "status": "ok",
                "router": self.router.name,
                "seed": self.router.seed,
                "workdir": self.router.workdir,
                "batches": self.batcher.batches,
                "prompts": self.batcher.prompts,
                "retried_batches": self.batcher.retried_batches,
                "in_flight": self.drain.in_flight,
                "connections": None if g is None else g.open,
                "refused_connections": None if g is None else g.refused,
                "timed_out_connections": None if g is None else g.timed_out,
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
        prompts = self._prompts(body["prompts"])
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
        self._prompts([prompt])
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
        fwd = {k: v for k, v in body.items() if k != "jaxroute"}
        endpoint = self.cfg.endpoints[name]
        fwd["model"] = endpoint.model or name
        return await forward(
            self.session,
            request,
            name,
            endpoint,
            fwd,
            stream=stream,
            timeout_s=self.cfg.backend_timeout_s,
            connect_timeout_s=self.cfg.backend_connect_timeout_s,
        )

    def _choose_available(self, scores, costs, policy: Policy) -> int:
        """The rule's choice among the models that have an endpoint."""
        idx = np.asarray(self.available)
        choice = get_rule(policy.rule).choose(scores[None, idx], costs[None, idx], policy.parameter)
        return int(idx[int(choice[0])])

    # ------------------------------------------------------------------ the gate
    def _admit(self, request: web.Request) -> None:
        """Drain, bearer token and rate limit, in that order (503, 401, 429)."""
        if self.drain.draining:
            raise ApiError(503, "server is shutting down", "server", {"Connection": "close"})
        token = self.cfg.auth_token
        if token and not G.check_token(request.headers.get("Authorization"), token):
            raise ApiError(
                401,
                "missing or wrong bearer token (Authorization: Bearer ...)",
                "authentication_error",
                {"WWW-Authenticate": "Bearer"},
            )
        if request.path not in OPEN_PATHS:
            wait = self.limiter.wait_s(request.remote or "?")
            if wait > 0:
                raise ApiError(
                    429,
                    f"rate limit: at most {self.cfg.rate_per_s:g} requests per second per client",
                    "rate_limit_error",
                    {"Retry-After": str(max(1, int(np.ceil(wait))))},
                )

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        transport = request.transport
        if self.guard is not None:
            self.guard.request_started(transport)
        self.drain.enter()
        try:
            self._admit(request)
            task = asyncio.ensure_future(handler(request))
            expired = asyncio.ensure_future(self.drain.expired.wait())
            try:
                await asyncio.wait({task, expired}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:  # the client left: so does its handler
                task.cancel()
                raise
            finally:
                expired.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise ApiError(503, "server shut down before this request finished", "server")
            return task.result()
        except ApiError as e:
            return error_response(e.status, e.message, e.kind, e.headers)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            return error_response(e.status, e.reason if not e.text else e.text, "http")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - logged here, one line to the client
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, f"internal error: {type(e).__name__}", "server")
        finally:
            self.drain.leave()
            if self.guard is not None:
                self.guard.request_done(transport)


def make_app(service: RouterService) -> web.Application:
    app = web.Application(
        middlewares=[service.middleware], client_max_size=service.cfg.max_body_bytes
    )
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


async def start_server(service: RouterService, host: str, port: int):
    """Listens on ``host:port`` behind the connection guard: ``(runner, listener, url)``."""
    cfg = service.cfg
    G.rate_limit_log()
    runner = web.AppRunner(
        make_app(service),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=1.0,
        keepalive_timeout=cfg.idle_timeout_s,
    )
    await runner.setup()
    service.guard = G.ConnectionGuard(
        runner.server,
        max_connections=G.connection_cap(cfg.max_connections),
        max_per_client=cfg.max_connections_per_client,
        header_timeout_s=cfg.header_timeout_s,
        idle_timeout_s=cfg.idle_timeout_s,
    )
    loop = asyncio.get_running_loop()
    try:
        listener = await loop.create_server(
            service.guard.protocol, host, port, reuse_address=True, backlog=1024
        )
    except OSError:
        await runner.cleanup()
        raise
    h, p = listener.sockets[0].getsockname()[:2]
    url = f"http://{h}:{p}" if ":" not in h else f"http://[{h}]:{p}"
    return runner, listener, url


async def shutdown(service: RouterService, runner, listener) -> int:
    """Stops accepting, drains (:class:`guard.Drain`), closes; the number of requests
    answered 503 because the grace period ran out."""
    listener.close()  # no new connections; requests on open ones are answered 503
    service.guard.refusing = True
    service.batcher.finish_first = True
    t0 = time.monotonic()
    log.info("draining %d requests in flight", service.drain.in_flight)
    try:
        cut = await service.drain.begin()
        log.info("drained in %.1f s (%d answered 503)", time.monotonic() - t0, cut)
    finally:
        await runner.cleanup()
    return cut


async def serve_forever(service: RouterService, host: str, port: int, ready=None) -> None:
    """Listens until SIGINT / SIGTERM, then drains; ``ready(url)`` is called once
    listening. Returns when every request has been answered (done or 503)."""
    runner, listener, url = await start_server(service, host, port)
    if ready is not None:
        ready(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await shutdown(service, runner, listener)


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
    "shutdown",
    "start_server",
]
