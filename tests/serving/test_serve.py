"""The ``serve`` app as a user runs it: a subprocess on 127.0.0.1, real HTTP clients."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import numpy as np
import pytest

from jaxroute import serving

CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=60)

# One worker runs them all under xdist (--dist loadgroup): one workdir, one server.
pytestmark = pytest.mark.xdist_group("serving")
pytestmark = [pytestmark, pytest.mark.slow]  # docs/testing.md


def call(method, url, *, data=None, json_body=None, read="json"):
    """One request with a bounded time: ``(status, headers, body)``."""

    async def go():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as s:
            kw = {"data": data} if data is not None else {"json": json_body}
            async with s.request(method, url, **kw) as r:
                raw = await r.read()
                return r.status, dict(r.headers), raw

    status, headers, raw = asyncio.run(go())
    if read == "raw":
        return status, headers, raw
    return status, headers, json.loads(raw)


def rule_choice(row):
    """The choice the rule makes from the returned scores and predicted costs."""
    names = list(row["scores"])
    s = np.array([row["scores"][m] for m in names], np.float32)
    c = np.array([row["predicted_costs"][m] for m in names], np.float32)
    p = np.float32(row["parameter"])
    if row["rule"] == "budget":
        ok = c <= p
        return names[int(np.argmax(np.where(ok, s, -np.inf)))] if ok.any() else names[c.argmin()]
    return names[int(np.argmax(s - p * c))]


def test_route_and_health(server, workdir):
    status, _, rows = call(
        "POST", f"{server}/route", json_body={"prompts": ["What is 2+2?", "Sort a list."]}
    )
    assert status == 200 and [r["prompt"] for r in rows] == ["What is 2+2?", "Sort a list."]
    for r in rows:  # the server's default policy
        assert (r["rule"], r["parameter"]) == ("budget", pytest.approx(0.003))
        assert r["model"] == rule_choice(r)
        assert r["predicted_cost"] == pytest.approx(r["predicted_costs"][r["model"]])
        assert r["over_budget"] is False and r["truncated"] is False
    # A calibrated target resolves to the stored curve's parameter.
    status, _, rows = call(
        "POST", f"{server}/route", json_body={"prompts": ["hello"], "target_share": 0.25}
    )
    cal = serving.read_calibration(workdir)
    want = serving.resolve_target(
        cal, workdir=workdir, router="mlp", seed=0, kind="share", target=0.25
    )
    assert status == 200 and rows[0]["parameter"] == pytest.approx(want.parameter)
    assert rows[0]["target"]["calibration_value"] <= 0.25
    assert rows[0]["model"] == rule_choice(rows[0])
    # A budget below every predicted cost: the cheapest model, flagged.
    status, _, rows = call("POST", f"{server}/route", json_body={"prompts": ["x"], "wtp": 10.0})
    assert status == 200 and rows[0]["rule"] == "lambda" and rows[0]["over_budget"] is False
    low = min(rows[0]["predicted_costs"].values())
    if low > 0:
        status, _, rows = call(
            "POST", f"{server}/route", json_body={"prompts": ["x"], "budget": low / 2}
        )
        assert rows[0]["over_budget"] is True
        assert rows[0]["model"] == min(
            rows[0]["predicted_costs"], key=rows[0]["predicted_costs"].get
        )
    status, _, health = call("GET", f"{server}/health")
    assert status == 200 and health["status"] == "ok" and health["router"] == "mlp"
    status, _, models = call("GET", f"{server}/models")
    assert status == 200 and [m["id"] for m in models["data"]] == list(rows[0]["scores"])


def test_concurrent_requests_share_encoder_calls(server):
    n = 16
    prompts = [[f"question {i}: what is {i} + {i}?"] for i in range(n)]

    async def go():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as s:

            async def one(p):
                async with s.post(f"{server}/route", json={"prompts": p}) as r:
                    return r.status, await r.json()

            async with s.get(f"{server}/health") as r:
                before = await r.json()
            out = await asyncio.gather(*(one(p) for p in prompts))
            async with s.get(f"{server}/health") as r:
                after = await r.json()
            return before, out, after

    before, out, after = asyncio.run(go())
    assert [st for st, _ in out] == [200] * n
    assert [rows[0]["prompt"] for _, rows in out] == [p[0] for p in prompts]
    assert after["prompts"] - before["prompts"] == n
    assert after["batches"] - before["batches"] < n  # requests shared encoder calls


BAD = [
    ("POST", "/route", b"{not json", 400, "not JSON"),
    ("POST", "/route", b"[1, 2]", 400, "JSON object"),
    ("POST", "/route", b'{"budget": 0.01}', 400, "missing field 'prompts'"),
    ("POST", "/route", b'{"prompts": "hi"}', 400, "list of strings"),
    ("POST", "/route", b'{"prompts": []}', 400, "no prompts"),
    ("POST", "/route", b'{"prompts": ["  "]}', 400, "empty"),
    ("POST", "/route", b'{"prompts": [3]}', 400, "not a string"),
    ("POST", "/route", b'{"prompts": ["a"], "budget": -1}', 400, "budget must be > 0"),
    ("POST", "/route", b'{"prompts": ["a"], "budget": 0}', 400, "budget must be > 0"),
    ("POST", "/route", b'{"prompts": ["a"], "budget": "1"}', 400, "finite number"),
    ("POST", "/route", b'{"prompts": ["a"], "budget": 1, "wtp": 1}', 400, "exactly one"),
    ("POST", "/route", b'{"prompts": ["a"], "target_share": 0.2, "model": "x"}', 400, "'x'"),
    ("POST", "/route", b'{"prompts": ["a"], "target_share": 1.5}', 400, "[0, 1]"),
    ("POST", "/route", b'{"prompts": ["a"], "target_quality": 2.0}', 400, "cannot be met"),
    ("POST", "/route", b'{"prompts": ["a"], "target_cost": 0.01, "rule": "x"}', 400, "rule"),
    ("POST", "/route", json.dumps({"prompts": ["a"] * 17}).encode(), 413, "more than 16"),
    ("POST", "/route", json.dumps({"prompts": ["a" * 2001]}).encode(), 413, "2001 characters"),
    ("POST", "/route", b'{"prompts": ["ok", "\\ud800"]}', 400, "prompt 1 is not valid Unicode"),
    (
        "POST",
        "/route",
        b'{"prompts": ["a"], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        400,
        "nested deeper than 32 levels",
    ),  # fmt: skip
    ("GET", "/route", None, 405, "Method Not Allowed"),
    ("GET", "/nowhere", None, 404, "Not Found"),
    ("POST", "/v1/chat/completions", b'{"messages": []}', 400, "non-empty list"),
    (
        "POST",
        "/v1/chat/completions",
        b'{"messages": [{"role": "system", "content": "x"}]}',
        400,
        "role 'user'",
    ),
    (
        "POST",
        "/v1/chat/completions",
        b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
        400,
        "'stream'",
    ),
]


@pytest.mark.parametrize(("method", "path", "data", "status", "reason"), BAD)
def test_bad_requests_get_one_line_reasons(server, method, path, data, status, reason):
    got, headers, raw = call(method, f"{server}{path}", data=data or b"", read="raw")
    assert got == status
    text = raw.decode()
    assert "\n" not in text.strip() and "Traceback" not in text
    body = json.loads(text)
    assert reason in body["error"]["message"] and body["error"]["code"] == status
    assert call("GET", f"{server}/health")[0] == 200  # still serving


def _chat(text, **extra):
    return {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
        **extra,
    }


def test_chat_is_routed_and_forwarded(server, backend):
    status, headers, body = call(
        "POST", f"{server}/v1/chat/completions", json_body=_chat("What is 2+2?")
    )
    assert status == 200
    chosen = headers["x-jaxroute-model"]
    assert body["model"] == chosen
    assert body["choices"][0]["message"]["content"] == "echo: What is 2+2?"
    sent = backend.requests[-1]
    assert sent["body"]["model"] == chosen and sent["auth"] == "Bearer sk-test"
    assert "jaxroute" not in sent["body"]
    # The request's own policy; the chosen model is the /route answer's.
    _, _, rows = call(
        "POST", f"{server}/route", json_body={"prompts": ["What is 2+2?"], "wtp": 0.0}
    )
    status, headers, body = call(
        "POST",
        f"{server}/v1/chat/completions",
        json_body=_chat("What is 2+2?", jaxroute={"wtp": 0.0}),
    )
    assert status == 200 and headers["x-jaxroute-model"] == rows[0]["model"]
    # "auto" routes; a named model with an endpoint is forwarded as asked; others are 400.
    status, headers, _ = call(
        "POST",
        f"{server}/v1/chat/completions",
        json_body=_chat("What is 2+2?", model="auto", jaxroute={"wtp": 0.0}),
    )
    assert status == 200 and headers["x-jaxroute-model"] == rows[0]["model"]
    other = next(m for m in rows[0]["scores"] if m != rows[0]["model"])
    status, headers, body = call(
        "POST", f"{server}/v1/chat/completions", json_body=_chat("hi", model=other)
    )
    assert status == 200 and headers["x-jaxroute-model"] == other == body["model"]
    status, _, body = call(
        "POST", f"{server}/v1/chat/completions", json_body=_chat("hi", model="gpt-5")
    )
    assert status == 400 and "unknown model 'gpt-5'" in body["error"]["message"]


def test_chat_stream_passes_through(server):
    status, headers, raw = call(
        "POST",
        f"{server}/v1/chat/completions",
        json_body=_chat("one two three", stream=True),
        read="raw",
    )
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [ln[len("data: ") :] for ln in raw.decode().splitlines() if ln.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks) == "echo: one two three "
    assert {c["model"] for c in chunks} == {headers["x-jaxroute-model"]}


@pytest.mark.parametrize(
    ("text", "status", "reason"),
    [
        ("please FAIL500", 502, "answered 500"),
        ("please FAIL401", 502, "answered 401: bad [redacted]"),
        ("please HANGUP", 502, "failed"),
        ("please SLOW", 504, "did not answer within"),
    ],
)
def test_backend_failures_are_bounded_and_explained(
    server, backend, backend_timeout, text, status, reason
):
    t0 = time.monotonic()
    got, _, raw = call("POST", f"{server}/v1/chat/completions", json_body=_chat(text), read="raw")
    elapsed = time.monotonic() - t0
    assert got == status and elapsed < backend_timeout + 10
    assert "\n" not in raw.decode().strip()
    assert reason in json.loads(raw)["error"]["message"]
    port = backend.url.split(":")[2].split("/")[0]
    for secret in ("sk-test", "Bearer", port, "127.0.0.1", "http"):  # key, URL: never
        assert secret not in raw.decode()
    assert call("GET", f"{server}/health")[0] == 200


HOSTILE = [
    b'{"prompts": ["\\ud800"]}',
    b'{"prompts": ["fine", "\\udfff and more"], "budget": 0.01}',
    b'{"prompts": ["a"], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"prompts": ["a"], "budget": -1}',
    b"{not json",
]


def test_a_hostile_client_never_fails_the_honest_ones(server):
    """8 honest clients route while one client loops over malformed requests (lone
    surrogates, deep nesting, bad fields): every honest request succeeds with its own
    rows, every hostile one is a 400."""
    honest_n, per_client = 8, 6

    async def go():
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as s:
            done = asyncio.Event()
            hostile = []

            async def attacker():
                i = 0
                while not done.is_set():
                    async with s.post(f"{server}/route", data=HOSTILE[i % len(HOSTILE)]) as r:
                        hostile.append(r.status)
                        await r.read()
                    i += 1

            async def client(c):
                out = []
                for i in range(per_client):
                    prompts = [f"client {c} asks {i}", f"and {i} + {c}"][: 1 + (i + c) % 2]
                    async with s.post(f"{server}/route", json={"prompts": prompts}) as r:
                        rows = await r.json() if r.status == 200 else None
                        out.append((r.status, prompts, rows))
                return out

            bad = asyncio.ensure_future(attacker())
            results = await asyncio.gather(*(client(c) for c in range(honest_n)))
            done.set()
            await bad
            return [x for r in results for x in r], hostile

    honest, hostile = asyncio.run(go())
    assert [st for st, _, _ in honest] == [200] * honest_n * per_client
    for _, prompts, rows in honest:
        assert [r["prompt"] for r in rows] == prompts
    assert len(hostile) >= len(HOSTILE) and set(hostile) == {400}
