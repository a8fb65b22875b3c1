"""The OpenAI-compatible backends ``serve`` forwards chats to: the models file, the
forwarding itself (plain or streamed), and what a client may learn when a backend fails.

A client never sees a backend's URL, its key or its error body verbatim: a failing
backend is answered with its status and a short message with anything that looks like
a URL, a key or a bearer token replaced by ``[redacted]`` (``docs/reliability_server.md``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re

import aiohttp
from aiohttp import web

from jaxroute.serving.requests import ApiError

log = logging.getLogger("jaxroute.serve")

# Backend statuses a client may act on (its request was at fault, or it should slow
# down); every other backend failure is a 502 (an authentication failure of the router's
# own key is not the client's).
PASSED_STATUSES = frozenset({400, 404, 413, 422, 429})
MESSAGE_CHARS = 160
_SECRETS = re.compile(
    r"(?i)(https?://\S+|\bbearer\s+\S+|\b(?:sk|pk|rk|key|api[-_]?key|token)[-_:=]\s*\S+"
    r"|\b[A-Za-z0-9_\-]{32,}\b)"
)


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible backend serving one model."""

    base_url: str
    api_key_env: str | None = None
    model: str | None = None  # the name the backend knows the model by (default: ours)

    def key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""


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


def redact(text: str, secrets=()) -> str:
    """``text`` on one line, at most :data:`MESSAGE_CHARS` characters, with the given
    secrets and anything shaped like a URL, a key or a bearer token replaced."""
    text = _SECRETS.sub("[redacted]", " ".join(text.split()))
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def backend_message(raw: str) -> str:
    """The message of an OpenAI-style error body (``{"error": {"message"}}``), else the
    body's text."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return raw
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        msg = err.get("message") if isinstance(err, dict) else err
        if isinstance(msg, str):
            return msg
    return raw


def _rename(line: bytes, name: str) -> bytes:
    """An SSE ``data: {...}`` line with the chosen model's name in ``model``."""
    if not line.startswith(b"data:"):
        return line
    payload = line[5:].strip()
    if not payload or payload == b"[DONE]":
        return line
    try:
        obj = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
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


async def forward(
    session: aiohttp.ClientSession,
    request: web.Request,
    name: str,
    endpoint: Endpoint,
    body: dict,
    *,
    stream: bool,
    timeout_s: float,
    connect_timeout_s: float,
) -> web.StreamResponse:
    """Sends ``body`` to ``endpoint`` and answers with its completion (streamed as it
    arrives if ``stream``), ``x-jaxroute-model: name`` on it; failures are 502/504 (or
    an SSE error event once a stream began), redacted."""
    url = endpoint.base_url + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    key = endpoint.key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    timeout = aiohttp.ClientTimeout(
        total=None if stream else timeout_s,
        connect=min(connect_timeout_s, timeout_s),
        sock_read=timeout_s,
    )
    tag = {"x-jaxroute-model": name}
    who = f"backend for model '{name}'"
    out = None
    try:
        async with session.post(url, json=body, headers=headers, timeout=timeout) as r:
            if r.status >= 400:
                raw = (await r.text(errors="replace"))[:4096]
                log.warning("%s at %s answered %d: %s", who, endpoint.base_url, r.status, raw)
                status = r.status if r.status in PASSED_STATUSES else 502
                msg = redact(backend_message(raw), (key, endpoint.base_url))
                raise ApiError(status, f"{who} answered {r.status}: {msg}", "backend")
            if not stream:
                try:
                    data = await r.json(content_type=None)
                except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError):
                    raise ApiError(502, f"{who} answered non-JSON", "backend") from None
                if not isinstance(data, dict):
                    raise ApiError(502, f"{who} answered a non-object", "backend")
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
            log.warning("%s at %s failed: %r", who, endpoint.base_url, e)
            raise ApiError(502, f"{who} failed: connection reset", "backend") from None
        return out
    except TimeoutError:
        msg = f"{who} did not answer within {timeout_s:g} s"
        if out is None:
            raise ApiError(504, msg, "backend") from None
        return await _end_stream(out, msg)
    except aiohttp.ClientError as e:
        log.warning("%s at %s failed: %r", who, endpoint.base_url, e)
        msg = f"{who} failed: {type(e).__name__}"
        if out is None:
            raise ApiError(502, msg, "backend") from None
        return await _end_stream(out, msg)


__all__ = [
    "PASSED_STATUSES",
    "Endpoint",
    "backend_message",
    "forward",
    "read_models_file",
    "redact",
]
