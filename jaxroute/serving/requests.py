"""Reading a ``serve`` request: one-line errors, the JSON body (bounded in time, size and
nesting), prompts the encoder can take, and the user text of a chat request.

Everything a client sends is checked here, before it reaches the micro-batch
(:mod:`jaxroute.serving.batcher`), so one client's malformed input is that client's 400
and never another request's failure (``docs/reliability_server.md``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from jaxroute.serving.router import check_prompts


class ApiError(Exception):
    """An error answered to the client: HTTP status and a one-line message."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())
        self.kind = kind
        self.headers = headers or {}


def error_response(status: int, message: str, kind: str, headers=None) -> web.Response:
    """``{"error": {"message", "type", "code"}}`` on one line."""
    body = {"error": {"message": " ".join(str(message).split()), "type": kind, "code": status}}
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def json_depth(obj: Any, limit: int) -> int:
    """The nesting depth of a parsed JSON value, counted without recursion; stops
    counting (returns ``limit + 1``) as soon as the limit is passed."""
    stack = [(obj, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, dict | list):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


async def read_json_object(request: web.Request, *, max_depth: int, timeout_s: float) -> dict:
    """The request's JSON object; 400 for a body that is not one (or is nested deeper
    than ``max_depth``), 408 for a body not received within ``timeout_s``."""
    try:
        raw = await asyncio.wait_for(request.read(), timeout_s)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout_s:g} s") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "request body is not UTF-8 text") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise ApiError(400, f"request body is not JSON ({e})") from None
    except RecursionError:
        raise ApiError(400, f"request body is nested deeper than {max_depth} levels") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(body).__name__}")
    if json_depth(body, max_depth) > max_depth:
        raise ApiError(400, f"request body is nested deeper than {max_depth} levels")
    return body


def unencodable(prompt: str) -> int | None:
    """The index of the first character UTF-8 cannot encode (a lone surrogate, which JSON
    can carry as ``\\ud800`` but the tokenizer refuses), or None."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def encoder_prompts(prompts: Any, *, max_prompts: int, max_chars: int) -> list[str]:
    """The prompts of a request, every one of which the encoder can take: a list of at
    most ``max_prompts`` non-blank strings of at most ``max_chars`` characters of valid
    Unicode text (400/413 naming the prompt)."""
    if isinstance(prompts, list) and len(prompts) > max_prompts:
        raise ApiError(413, f"{len(prompts)} prompts, more than {max_prompts}")
    try:
        prompts = check_prompts(prompts, max_chars=max_chars)
    except ValueError as e:
        status = 413 if "characters, more than" in str(e) else 400
        raise ApiError(status, str(e)) from None
    for i, p in enumerate(prompts):
        at = unencodable(p)
        if at is not None:
            raise ApiError(
                400,
                f"prompt {i} is not valid Unicode text: character {at} is a lone surrogate "
                f"({p[at]!a}), which the tokenizer cannot take",
            )
    return prompts


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


__all__ = [
    "ApiError",
    "encoder_prompts",
    "error_response",
    "json_depth",
    "last_user_message",
    "read_json_object",
    "unencodable",
]
