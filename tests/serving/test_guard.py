"""``serve`` under hostile traffic, in process: the real server (guard, batcher, drain)
around a fake router on 127.0.0.1, so each case takes a second, not a model load."""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import time

import aiohttp
import pytest

from jaxroute.serving import guard as G
from jaxroute.serving.backends import backend_message, redact
from jaxroute.serving.batcher import Batcher
from jaxroute.serving.requests import ApiError, json_depth

TIMEOUT = aiohttp.ClientTimeout(total=30)


async def _post(s, url, body=None, data=None, headers=None):
    kw = {"data": data} if data is not None else {"json": body}
    async with s.post(url, headers=headers, **kw) as r:
        return r.status, dict(r.headers), await r.read()


def post(url, body=None, data=None, headers=None):
    async def go():
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
            return await _post(s, url, body, data, headers)

    return asyncio.run(go())


def raw_exchange(host, port, payload: bytes, wait_s=5.0) -> bytes:
    """Sends ``payload`` on a fresh connection and reads until the server closes."""
    with socket.create_connection((host, port), timeout=wait_s) as sk:
        sk.sendall(payload)
        out = b""
        while chunk := sk.recv(65536):
            out += chunk
        return out


# --------------------------------------------------------------------------- 1. isolation


def test_lone_surrogate_is_refused_before_batching(inproc, FakeRouter):
    router = FakeRouter()
    srv = inproc(router)
    status, _, raw = post(f"{srv.url}/route", data=b'{"prompts": ["fine", "\\ud800 x"]}')
    assert status == 400
    msg = json.loads(raw)["error"]["message"]
    assert msg.startswith("prompt 1 is not valid Unicode text") and "lone surrogate" in msg
    assert router.calls == []  # never reached the encoder


def test_a_failing_request_fails_alone_in_its_batch(FakeRouter):
    """One poisoned request among 12 queued together: the batch fails, each request is
    retried alone, only the poisoned one gets the error."""
    router = FakeRouter()

    async def go():
        b = Batcher(router, window_s=0.0, max_batch=64)
        prompts = [[f"honest {i}"] for i in range(11)]
        prompts.insert(5, ["POISON pill", "and a good one"])
        jobs = [asyncio.ensure_future(b.submit(p)) for p in prompts]  # queued in one tick
        await asyncio.sleep(0)
        b.start()
        try:
            return await asyncio.gather(*jobs, return_exceptions=True), b.retried_batches
        finally:
            await b.stop()

    out, retried = asyncio.run(go())
    assert isinstance(out[5], ApiError) and (out[5].status, out[5].message) == (
        500,
        "routing failed: RuntimeError",
    )
    honest = [r for i, r in enumerate(out) if i != 5]
    assert [float(scores[0][0]) for scores, _, _ in honest] == [0.4] * 11
    assert router.calls[0] == [p for c in [[f"honest {i}"] for i in range(5)] for p in c] + [
        "POISON pill",
        "and a good one",
        *[f"honest {i}" for i in range(5, 11)],
    ]  # one batch, then each request alone
    assert len(router.calls) == 13 and retried == 1


def test_a_failing_request_is_a_500_to_its_client_only(inproc, FakeRouter):
    srv = inproc(FakeRouter(), batch_window_s=0.05)

    async def go():
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
            bodies = [{"prompts": [f"honest {i}"]} for i in range(5)]
            bodies.insert(2, {"prompts": ["POISON pill"]})
            return await asyncio.gather(*(_post(s, f"{srv.url}/route", b) for b in bodies))

    out = asyncio.run(go())
    assert [st for st, _, _ in out] == [200, 200, 500, 200, 200, 200]
    assert json.loads(out[2][2])["error"]["message"] == "routing failed: RuntimeError"
    assert [json.loads(raw)[0]["prompt"] for _, _, raw in out[3:]] == [
        f"honest {i}" for i in range(2, 5)
    ]


# --------------------------------------------------------------------------- 2. fairness


def test_batches_serve_new_requests_first_then_round_robin(FakeRouter):
    async def go():
        b = Batcher(FakeRouter(), max_batch=4)
        loop = asyncio.get_running_loop()
        big = asyncio.ensure_future(b.submit([f"big {i}" for i in range(10)]))
        await asyncio.sleep(0)
        first = b.take()
        small = asyncio.ensure_future(b.submit(["small"]))
        other = asyncio.ensure_future(b.submit(["o1", "o2"]))
        await asyncio.sleep(0)
        second, third, fourth = b.take(), b.take(), b.take()
        for t in (big, small, other):
            t.cancel()
        del loop
        return first, second, third, fourth

    first, second, third, fourth = asyncio.run(go())
    spans = [[(j.prompts[0], a, z) for j, a, z in picks] for picks in (first, second, third)]
    assert spans[0] == [("big 0", 0, 4)]
    assert spans[1] == [("small", 0, 1), ("o1", 0, 2), ("big 0", 4, 5)]  # new ones first
    assert spans[2] == [("big 0", 5, 9)]
    assert [(j.prompts[0], a, z) for j, a, z in fourth] == [("big 0", 9, 10)]


def test_while_draining_one_request_is_finished_at_a_time(FakeRouter):
    async def go():
        b = Batcher(FakeRouter(), max_batch=4)
        jobs = [asyncio.ensure_future(b.submit([f"{n}{i}" for i in range(10)])) for n in "AB"]
        await asyncio.sleep(0)
        out = [b.take() for _ in range(3)]
        b.finish_first = True  # SIGTERM
        out += [b.take() for _ in range(3)]
        for t in jobs:
            t.cancel()
        return [[(j.prompts[0][0], a, z) for j, a, z in picks] for picks in out]

    assert asyncio.run(go()) == [
        [("A", 0, 4)],
        [("B", 0, 4)],  # a new request first
        [("A", 4, 8)],  # then round robin
        [("B", 4, 8)],  # draining: B, the head of the rotation, to its end
        [("B", 8, 10), ("A", 8, 10)],
        [],
    ]


def test_batches_are_bounded_in_characters(FakeRouter):
    async def go():
        b = Batcher(FakeRouter(), max_batch=8, max_chars=100)
        jobs = [
            asyncio.ensure_future(b.submit(["x" * 60, "y" * 60, "z" * 10, "w" * 5000])),
            asyncio.ensure_future(b.submit(["s" * 30])),
        ]
        await asyncio.sleep(0)
        out = [[(j.prompts[0][0], a, z) for j, a, z in b.take()] for _ in range(4)]
        for t in jobs:
            t.cancel()
        return out

    assert asyncio.run(go()) == [
        [("x", 0, 1), ("s", 0, 1)],  # 60 + 30; the next 60 would pass 100
        [("x", 1, 3)],  # 60 + 10
        [("x", 3, 4)],  # alone: over the limit, but a batch holds at least one prompt
        [],
    ]


def test_a_short_request_waits_for_at_most_the_batch_in_progress(inproc, FakeRouter):
    router = FakeRouter(delay_s=0.02)  # 8 prompts: 0.16 s a batch, 64 prompts: 1.3 s
    srv = inproc(router, max_batch=8, max_prompts=64, batch_window_s=0.0)

    async def go():
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
            t0 = time.monotonic()
            big = asyncio.ensure_future(
                _post(s, f"{srv.url}/route", {"prompts": [f"long {i}" for i in range(64)]})
            )
            while not router.calls:  # the long request is being routed
                await asyncio.sleep(0.01)
            t1 = time.monotonic()
            small = await _post(s, f"{srv.url}/route", {"prompts": ["short"]})
            t_small = time.monotonic() - t1
            await big
            return small, t_small, time.monotonic() - t0

    small, t_small, t_big = asyncio.run(go())
    assert small[0] == 200
    i = next(k for k, c in enumerate(router.calls) if "short" in c)
    assert 1 <= i <= 3 and len(router.calls) == 9  # behind at most the batch in progress
    assert t_small < t_big / 2


# --------------------------------------------------------------------------- 2. limits


def test_json_depth():
    assert json_depth({"a": [1, {"b": []}]}, 32) == 4
    assert json_depth("x", 32) == 0
    assert json_depth([[[[[]]]]], 3) == 4  # stops counting past the limit


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deep_json_is_a_400(inproc, depth):
    srv = inproc()
    body = b'{"prompts": ["a"], "x": ' + b"[" * depth + b"]" * depth + b"}"
    status, _, raw = post(f"{srv.url}/route", data=body)
    assert status == 400
    assert json.loads(raw)["error"]["message"] == "request body is nested deeper than 32 levels"


def test_connection_cap_answers_503(inproc):
    srv = inproc(max_connections=3, header_timeout_s=30)
    held = [socket.create_connection((srv.host, srv.port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        reply = raw_exchange(srv.host, srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503 ")
        assert b"connection limit reached" in reply
        assert srv.service.guard.refused == 1
    finally:
        for sk in held:
            sk.close()
    time.sleep(0.2)
    status, _, _ = post(f"{srv.url}/route", {"prompts": ["a"]})
    assert status == 200


def test_one_client_cannot_hold_every_connection(inproc):
    """Connections from 127.0.0.2 beyond the per-client cap are refused; 127.0.0.1 is
    still served."""
    srv = inproc(max_connections_per_client=3, header_timeout_s=30)
    src = ("127.0.0.2", 0)
    held = [socket.create_connection((srv.host, srv.port), source_address=src) for _ in range(3)]
    try:
        time.sleep(0.2)
        with socket.create_connection((srv.host, srv.port), source_address=src) as sk:
            sk.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sk.recv(65536).startswith(b"HTTP/1.1 503 ")
        assert post(f"{srv.url}/route", {"prompts": ["a"]})[0] == 200
        assert srv.service.guard.per_client["127.0.0.2"] == 3
    finally:
        for sk in held:
            sk.close()


def test_slow_headers_are_cut_off_and_others_served(inproc):
    srv = inproc(header_timeout_s=0.5)
    slow = [socket.create_connection((srv.host, srv.port)) for _ in range(20)]
    t0 = time.monotonic()
    try:
        head = b"POST /route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20\r\n"
        for i in range(6):  # one byte at a time, as a slow-loris client sends
            for sk in slow:
                sk.sendall(head[i : i + 1])
            time.sleep(0.1)
        assert post(f"{srv.url}/route", {"prompts": ["a"]})[0] == 200
        for sk in slow:
            sk.settimeout(5)
            try:
                while sk.recv(1024):  # the server closes; nothing was answered
                    pass
            except ConnectionResetError:
                pass
        assert time.monotonic() - t0 < 10.0  # the idle timeout (30 s) did not do it
        assert srv.service.guard.timed_out == 20
    finally:
        for sk in slow:
            sk.close()


def test_accept_errors_are_logged_once_per_interval(caplog):
    assert G.rate_limit_log() is G.rate_limit_log()  # one filter, however many servers
    assert G.rate_limit_log() in logging.getLogger("asyncio").filters
    flt = G.EveryInterval("socket.accept() out of system resource", interval_s=60.0)
    logger = logging.getLogger("test_guard.accept")
    logger.addFilter(flt)
    with caplog.at_level(logging.ERROR, logger=logger.name):
        for _ in range(1000):
            logger.error("socket.accept() out of system resource\nsocket: <x>")
        logger.error("something else")
        flt.last -= 61.0  # the interval passed
        logger.error("socket.accept() out of system resource\nsocket: <x>")
    assert [r.getMessage() for r in caplog.records] == [
        "socket.accept() out of system resource",
        "something else",
        "socket.accept() out of system resource (999 more like it in the last 61 s)",
    ]


def test_connection_cap_fits_the_descriptor_limit():
    cap = G.connection_cap(10**9)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert cap == soft - 2 * G.FD_MARGIN


# --------------------------------------------------------------------------- 4. auth, rate


def test_bearer_token(inproc):
    srv = inproc(auth_token="s3cret-token")
    url = f"{srv.url}/route"
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        status, h, raw = post(url, {"prompts": ["a"]}, headers=headers)
        assert status == 401 and h["WWW-Authenticate"] == "Bearer"
        assert b"s3cret" not in raw
    status, _, _ = post(url, {"prompts": ["a"]}, headers={"Authorization": "Bearer s3cret-token"})
    assert status == 200


def test_rate_limit_per_client(inproc):
    srv = inproc(rate_per_s=0.5, rate_burst=2)
    got = [post(f"{srv.url}/route", {"prompts": ["a"]}) for _ in range(3)]
    assert [st for st, _, _ in got] == [200, 200, 429]
    assert got[2][1]["Retry-After"] == "2"
    assert "at most 0.5 requests per second" in json.loads(got[2][2])["error"]["message"]


def test_rate_limiter_refills():
    lim = G.RateLimiter(2.0, burst=1)
    assert lim.wait_s("a", now=0.0) == 0.0
    assert lim.wait_s("a", now=0.1) == pytest.approx(0.4)
    assert lim.wait_s("b", now=0.1) == 0.0  # per client
    assert lim.wait_s("a", now=0.6) == 0.0


def test_check_token():
    assert G.check_token("Bearer abc", "abc")
    assert not G.check_token("Bearer abd", "abc")
    assert not G.check_token("abc", "abc")
    assert not G.check_token(None, "abc")


# --------------------------------------------------------------------------- 3. drain


@pytest.mark.parametrize(("grace", "want_ok"), [(30.0, 12), (0.0, 0)])
def test_drain_finishes_or_503s_what_is_in_flight(inproc, FakeRouter, grace, want_ok):
    router = FakeRouter(delay_s=0.05)  # 12 requests of 4 prompts, 8 a batch: 2.4 s
    srv = inproc(router, max_batch=8, drain_grace_s=grace)

    async def go():
        async with aiohttp.ClientSession(timeout=TIMEOUT) as s:
            reqs = [
                asyncio.ensure_future(
                    _post(s, f"{srv.url}/route", {"prompts": [f"r{i} p{k}" for k in range(4)]})
                )
                for i in range(12)
            ]
            while srv.service.drain.in_flight < 12:  # all 12 held by the server
                await asyncio.sleep(0.01)
            stopping = asyncio.get_running_loop().run_in_executor(None, srv.stop)
            await asyncio.sleep(0.1)
            try:
                await _post(s, f"{srv.url}/route", {"prompts": ["late"]})
                late = "answered"
            except aiohttp.ClientConnectionError:
                late = "refused"
            out = await asyncio.gather(*reqs)
            return out, late, await stopping

    out, late, cut = asyncio.run(go())
    statuses = [st for st, _, _ in out]
    assert late == "refused"
    assert statuses.count(200) + statuses.count(503) == 12
    if want_ok:
        assert statuses == [200] * 12 and cut == 0
    else:
        assert statuses.count(503) == cut >= 8  # at most the batch in progress finished
        body = json.loads(out[statuses.index(503)][2])
        assert body["error"]["message"] == "server shut down before this request finished"


def test_backend_messages_are_redacted():
    body = json.dumps(
        {"error": {"message": "bad key: Bearer hunter2 at https://10.1.2.3:8443/v1 (key=abc)"}}
    )
    assert redact(backend_message(body), ("hunter2",)) == (
        "bad [redacted] [redacted] at [redacted] ([redacted]"
    )
    assert redact("no plan sk-proj-aaaa; hunter2", ("hunter2",)) == "no plan [redacted] [redacted]"
    assert redact("quota exceeded, retry in 20s") == "quota exceeded, retry in 20s"
    assert len(redact("word " * 200)) == 160 and redact("word " * 200).endswith("...")
    assert backend_message("<html>oops</html>") == "<html>oops</html>"
