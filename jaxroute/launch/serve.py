r"""Serves a trained workdir's router over HTTP (routing, and OpenAI-compatible chat).

    python -m jaxroute.launch.serve --workdir=W --port=8000 --budget=0.002 \
        --models_file=models.json
    curl -s localhost:8000/route -d '{"prompts": ["What is 2+2?"], "target_share": 0.2}'

Loads the router and the sentence encoder once, compiles them for the batch shapes it
uses, then answers ``POST /route``, ``POST /v1/chat/completions`` (forwarded to the
chosen model's endpoint from ``--models_file``: ``{"name": {"base_url":
"http://host:port/v1", "api_key_env": "VAR"}}``), ``GET /health`` and ``GET /models``.
``--budget`` / ``--wtp`` / ``--target_*`` set the default policy (a request may give its
own). Listens on 127.0.0.1 unless ``--host`` says otherwise; prints ``serving on URL``
once ready. On SIGINT / SIGTERM it stops accepting, gives the requests in flight
``--drain_grace_s`` to finish, answers the rest 503 and exits 0.

With ``--auth_token_env=VAR`` or ``--auth_token_file=PATH`` every request must carry
``Authorization: Bearer <token>`` (the token is never a flag value: argv is visible to
every user of the machine). Limits against hostile traffic (connections, header and
idle timeouts, a per-client rate, JSON depth) are described, with their measurements,
in ``docs/reliability_server.md``.
"""

import asyncio
import ipaddress
import os
import pathlib
import sys
import time

from absl import app, flags, logging

from jaxroute import serving
from jaxroute.launch import common, policy_flags
from jaxroute.serving import server

_WORKDIR = common.WORKDIR
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
_PORT = flags.DEFINE_integer("port", 8000, "Port (0: any free port, printed at start).")
_POLICY = policy_flags.define_policy_flags()  # the default policy
_ROUTER = policy_flags.define_router_flags()
_MODELS_FILE = flags.DEFINE_string(
    "models_file", None, "JSON: model name -> {base_url, api_key_env?, model?} for chat."
)
_WINDOW_MS = flags.DEFINE_float("batch_window_ms", 5.0, "Wait this long to batch requests.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 32, "Prompts per encoder call (soft limit).")
_MAX_BATCH_CHARS = flags.DEFINE_integer(
    "max_batch_chars", 4096, "Characters per batch (each prompt counted up to 2048)."
)
_MAX_PROMPTS = flags.DEFINE_integer("max_prompts", 256, "Prompts per /route request.")
_MAX_CHARS = flags.DEFINE_integer("max_prompt_chars", 100_000, "Characters per prompt.")
_TIMEOUT = flags.DEFINE_float("backend_timeout_s", 60.0, "Backend read timeout (seconds).")
_CONNECT = flags.DEFINE_float("backend_connect_timeout_s", 10.0, "Backend connect timeout.")
_MAX_CONNECTIONS = flags.DEFINE_integer(
    "max_connections", 512, "Open connections at most (more: 503); lowered to fit ulimit -n."
)
_PER_CLIENT = flags.DEFINE_integer(
    "max_connections_per_client", 128, "Open connections from one address at most (more: 503)."
)
_HEADER_TIMEOUT = flags.DEFINE_float(
    "header_timeout_s", 10.0, "Close a connection whose request head is not in by then."
)
_IDLE_TIMEOUT = flags.DEFINE_float("idle_timeout_s", 30.0, "Close a keep-alive idle this long.")
_BODY_TIMEOUT = flags.DEFINE_float("body_timeout_s", 30.0, "408 if the body takes longer.")
_MAX_DEPTH = flags.DEFINE_integer("max_json_depth", 32, "Nesting of a request body at most.")
_RATE = flags.DEFINE_float("rate_limit", 0.0, "Requests per second per client (0: no limit).")
_BURST = flags.DEFINE_integer("rate_burst", 0, "Requests a client may send at once (0: 2x).")
_GRACE = flags.DEFINE_float("drain_grace_s", 10.0, "On SIGTERM, time in-flight requests get.")
_TOKEN_ENV = flags.DEFINE_string(
    "auth_token_env", None, "Environment variable holding the bearer token clients must send."
)
_TOKEN_FILE = flags.DEFINE_string(
    "auth_token_file", None, "File holding the bearer token clients must send."
)
_WARM_LENGTHS = flags.DEFINE_list(
    "warm_lengths", [], "Token buckets to compile at start (default: all of the encoder's)."
)


def read_token(env: str | None, path: str | None) -> str | None:
    """The bearer token from the named environment variable or file (one line naming it)."""
    if env and path:
        raise ValueError("give --auth_token_env or --auth_token_file, not both")
    if env:
        token = os.environ.get(env, "").strip()
        if not token:
            raise ValueError(f"--auth_token_env: ${env} is not set or empty")
        return token
    if path:
        p = pathlib.Path(path)
        try:
            token = p.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--auth_token_file: {p}: cannot read ({e})") from None
        if not token or "\n" in token:
            raise ValueError(f"--auth_token_file: {p}: must hold the token on one line")
        return token
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    policy = _POLICY.given()
    try:
        token = read_token(_TOKEN_ENV.value, _TOKEN_FILE.value)
        if token is None and not is_loopback(_HOST.value):
            print(
                f"warning: listening on {_HOST.value} without a bearer token: anyone who reaches "
                "the port can route and spend the backends' keys; set --auth_token_env or "
                "--auth_token_file (and --rate_limit)",
                file=sys.stderr,
                flush=True,
            )
        lengths = [int(x) for x in _WARM_LENGTHS.value] or None
        if policy:
            serving.policy_fields(policy)
        t0 = time.perf_counter()
        router = serving.load_router(
            _WORKDIR.value, router=_ROUTER.router.value, seed_index=_ROUTER.seed_index.value
        )
        endpoints = {}
        if _MODELS_FILE.value:
            endpoints = server.read_models_file(_MODELS_FILE.value, router.models)
        cfg = server.ServeConfig(
            default_policy=policy,
            endpoints=endpoints,
            max_prompts=_MAX_PROMPTS.value,
            max_prompt_chars=_MAX_CHARS.value,
            backend_timeout_s=_TIMEOUT.value,
            backend_connect_timeout_s=_CONNECT.value,
            batch_window_s=_WINDOW_MS.value / 1000.0,
            max_batch=_MAX_BATCH.value,
            max_batch_chars=_MAX_BATCH_CHARS.value,
            max_json_depth=_MAX_DEPTH.value,
            max_connections=_MAX_CONNECTIONS.value,
            max_connections_per_client=_PER_CLIENT.value,
            header_timeout_s=_HEADER_TIMEOUT.value,
            idle_timeout_s=_IDLE_TIMEOUT.value,
            body_timeout_s=_BODY_TIMEOUT.value,
            rate_per_s=_RATE.value,
            rate_burst=_BURST.value,
            drain_grace_s=_GRACE.value,
            auth_token=token,
        )
        service = server.RouterService(router, cfg)
        logging.info("compiling the encoder and router for up to %d prompts", _MAX_BATCH.value)
        router.warmup(_MAX_BATCH.value, lengths)
        logging.info("loaded and compiled in %.1f s", time.perf_counter() - t0)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

    def ready(url):
        print(f"serving on {url} (router {router.name}, seed {router.seed})", flush=True)

    try:
        asyncio.run(server.serve_forever(service, _HOST.value, _PORT.value, ready))
    except OSError as e:  # port taken, interface unknown
        print(f"error: cannot listen on {_HOST.value}:{_PORT.value}: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    common.run(main)
