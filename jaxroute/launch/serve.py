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
once ready; stops on SIGINT / SIGTERM.
"""

import asyncio
import sys
import time

from absl import app, flags, logging

from jaxroute import serving
from jaxroute.launch import common  # noqa: F401  (shared flags)
from jaxroute.serving import server

_WORKDIR = common.WORKDIR
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
_PORT = flags.DEFINE_integer("port", 8000, "Port (0: any free port, printed at start).")
_ROUTER = flags.DEFINE_string("router", None, "Router name (default: the first trained one).")
_SEED_INDEX = flags.DEFINE_integer("seed_index", 0, "Which of the K seeds' routers to use.")
_MODELS_FILE = flags.DEFINE_string(
    "models_file", None, "JSON: model name -> {base_url, api_key_env?, model?} for chat."
)
_BUDGET = flags.DEFINE_float("budget", None, "Default policy: budget rule, USD per prompt.")
_WTP = flags.DEFINE_float("wtp", None, "Default policy: willingness-to-pay λ.")
_TARGET_COST = flags.DEFINE_float("target_cost", None, "Default policy: calibrated mean cost.")
_TARGET_SHARE = flags.DEFINE_float("target_share", None, "Default policy: calibrated share.")
_TARGET_QUALITY = flags.DEFINE_float("target_quality", None, "Default policy: calibrated quality.")
_RULE = flags.DEFINE_enum("rule", None, ["budget", "lambda"], "Rule for a default target.")
_MODEL = flags.DEFINE_string("model", None, "Model of a default --target_share.")
_WINDOW_MS = flags.DEFINE_float("batch_window_ms", 5.0, "Wait this long to batch requests.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 32, "Prompts per encoder call (soft limit).")
_MAX_PROMPTS = flags.DEFINE_integer("max_prompts", 256, "Prompts per /route request.")
_MAX_CHARS = flags.DEFINE_integer("max_prompt_chars", 100_000, "Characters per prompt.")
_TIMEOUT = flags.DEFINE_float("backend_timeout_s", 60.0, "Backend read timeout (seconds).")
_CONNECT = flags.DEFINE_float("backend_connect_timeout_s", 10.0, "Backend connect timeout.")
_WARM_LENGTHS = flags.DEFINE_list(
    "warm_lengths", [], "Token buckets to compile at start (default: all of the encoder's)."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    policy = {
        k: v
        for k, v in {
            "budget": _BUDGET.value,
            "wtp": _WTP.value,
            "target_cost": _TARGET_COST.value,
            "target_share": _TARGET_SHARE.value,
            "target_quality": _TARGET_QUALITY.value,
            "rule": _RULE.value,
            "model": _MODEL.value,
        }.items()
        if v is not None
    }
    try:
        lengths = [int(x) for x in _WARM_LENGTHS.value] or None
        if policy:
            serving.policy_fields(policy)
        t0 = time.perf_counter()
        router = serving.load_router(
            _WORKDIR.value, router=_ROUTER.value, seed_index=_SEED_INDEX.value
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
