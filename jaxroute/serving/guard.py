"""What keeps ``serve`` up under hostile traffic (``docs/reliability_server.md``).

- :class:`ConnectionGuard`: at most ``max_connections`` open connections, and at most
  ``max_per_client`` from one address (the next one is answered ``503`` and closed),
  so one client holding connections does not lock the others out; and a deadline for
  each request's head: a connection that has not sent a complete one within
  ``header_timeout_s`` of opening (or ``idle_timeout_s`` after its last answer) is closed.
- :class:`RateLimiter`: a token bucket per client address (``429`` with ``Retry-After``).
- :class:`Drain`: on SIGTERM the listener closes, requests in flight get ``grace_s`` to
  finish, then are answered ``503``; requests arriving meanwhile on open connections too.
- :func:`rate_limit_log`: a flood of ``socket.accept() out of system resource`` errors
  becomes one log line per interval with the count of those it held back.
- :func:`check_token`: the optional bearer token, compared in constant time.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import resource
import time

log = logging.getLogger("jaxroute.serve")

FD_MARGIN = 64  # descriptors kept free for the backends, the log and the files read
REFUSED_LINGERING = FD_MARGIN // 2  # refused connections left open to read their request
_REFUSED_BODY = (
    b'{"error": {"message": "connection limit reached, retry later", '
    b'"type": "server", "code": 503}}'
)
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_REFUSED_BODY), _REFUSED_BODY)
)


def connection_cap(requested: int) -> int:
    """``requested``, lowered to fit the process's file-descriptor limit (raised to its
    hard limit first) less :data:`FD_MARGIN`, so ``accept`` never runs out of them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            want = requested + 2 * FD_MARGIN
            new = want if hard == resource.RLIM_INFINITY else min(hard, max(soft, want))
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    return max(1, min(requested, soft - 2 * FD_MARGIN))


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's protocol inside, a header deadline around it."""

    def __init__(self, guard: ConnectionGuard):
        self.guard = guard
        self.inner = None
        self.transport = None
        self.client = "?"
        self.timer = None
        self.busy = 0
        self.lingering = False

    def connection_made(self, transport):
        self.transport = transport
        g = self.guard
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if isinstance(peer, tuple) and peer else "?"
        if (
            g.open >= g.max_connections
            or g.per_client[self.client] >= g.max_per_client
            or g.refusing
        ):
            g.refused += 1
            transport.write(REFUSED)
            if g.lingering >= REFUSED_LINGERING:  # a flood: free the descriptor now
                transport.close()
                return
            # Closing with the client's request unread would reset the connection and
            # could lose the 503: wait (at most a second) for the request, then close.
            if transport.can_write_eof():
                transport.write_eof()
            g.lingering += 1
            self.lingering = True
            self.timer = asyncio.get_running_loop().call_later(1.0, transport.close)
            return
        g.open += 1
        g.per_client[self.client] += 1
        g.connections[transport] = self
        self.inner = g.factory()
        self.inner.connection_made(transport)
        self.arm(g.header_timeout_s)

    def arm(self, seconds: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _expire(self) -> None:
        self.timer = None
        if self.busy == 0 and self.transport is not None:
            self.guard.timed_out += 1
            self.transport.close()

    def data_received(self, data):
        if self.inner is not None:
            self.inner.data_received(data)
        elif self.transport is not None:  # a refused client's request: read, now close
            self.transport.close()

    def eof_received(self):
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self):
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self):
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lingering:
            self.guard.lingering -= 1
            self.lingering = False
        if self.inner is not None:
            g = self.guard
            g.open -= 1
            g.per_client[self.client] -= 1
            if not g.per_client[self.client]:
                del g.per_client[self.client]
            self.guard.connections.pop(self.transport, None)
            self.inner.connection_lost(exc)
        self.transport = None


class ConnectionGuard:
    """A protocol factory around aiohttp's (``factory``): connection cap, header deadline."""

    def __init__(
        self, factory, *, max_connections, max_per_client, header_timeout_s, idle_timeout_s
    ):
        self.factory = factory
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.per_client: collections.Counter[str] = collections.Counter()
        self.header_timeout_s = header_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.connections: dict = {}
        self.open = 0
        self.refused = 0
        self.timed_out = 0
        self.refusing = False
        self.lingering = 0  # refused connections waiting for their request before closing

    def protocol(self) -> asyncio.Protocol:
        return _Guarded(self)

    def request_started(self, transport) -> None:
        conn = self.connections.get(transport)
        if conn is not None:
            conn.busy += 1
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None

    def request_done(self, transport) -> None:
        conn = self.connections.get(transport)
        if conn is not None:
            conn.busy -= 1
            if conn.busy == 0:  # the next request head is due within the idle timeout
                conn.arm(self.idle_timeout_s)


class RateLimiter:
    """A token bucket per client: ``rate_per_s`` requests a second, ``burst`` at once."""

    def __init__(self, rate_per_s: float, burst: int, max_clients: int = 10_000):
        self.rate = rate_per_s
        self.burst = float(max(1, burst))
        self.max_clients = max_clients
        self.buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def wait_s(self, client: str, now: float | None = None) -> float:
        """0 if ``client`` may go now (one token taken), else seconds until it may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self.buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self.buckets[client] = (tokens, now)
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return wait


class Drain:
    """Graceful shutdown: counts requests in flight; after :meth:`begin`, new requests
    are refused and the event ``expired`` is set ``grace_s`` later."""

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.in_flight = 0
        self.draining = False
        self.expired = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    async def begin(self) -> int:
        """Waits for the requests in flight (at most ``grace_s``); the number answered
        503 because the grace period ran out."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), self.grace_s)
            return 0
        except TimeoutError:
            left = self.in_flight
            self.expired.set()
        try:  # the handlers answer 503 as they are cancelled
            await asyncio.wait_for(self._idle.wait(), 5.0)
        except TimeoutError:
            pass
        return left


def check_token(given_header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``."""
    if not given_header or not given_header.startswith("Bearer "):
        return False
    return hmac.compare_digest(given_header[len("Bearer ") :].strip().encode(), token.encode())


class EveryInterval(logging.Filter):
    """Passes one record starting with ``prefix`` per ``interval_s``, counting the rest."""

    def __init__(self, prefix: str, interval_s: float):
        super().__init__()
        self.prefix = prefix
        self.interval_s = interval_s
        self.last = -float("inf")
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        if not text.startswith(self.prefix):
            return True
        now = time.monotonic()
        if now - self.last < self.interval_s:
            self.held += 1
            return False
        first = text.splitlines()[0]
        if self.held:
            first += f" ({self.held} more like it in the last {now - self.last:.0f} s)"
        record.msg, record.args = first, ()
        record.exc_info = None  # one line, not a traceback per accept
        self.last, self.held = now, 0
        return True


# asyncio's logs of a listener out of descriptors: each failed accept, and (CPython
# 3.11) each accept retry it had scheduled when the listener has closed since.
FLOODS = (
    "socket.accept() out of system resource",
    "Exception in callback BaseSelectorEventLoop._start_serving",
)
_FILTERS: list[EveryInterval] = []


def rate_limit_log(interval_s: float = 10.0) -> EveryInterval:
    """The accept-error filters on asyncio's logger (installed once per process); the
    first, for ``socket.accept() out of system resource``, is returned."""
    if not _FILTERS:
        for prefix in FLOODS:
            flt = EveryInterval(prefix, interval_s)
            logging.getLogger("asyncio").addFilter(flt)
            _FILTERS.append(flt)
    return _FILTERS[0]


__all__ = [
    "ConnectionGuard",
    "Drain",
    "EveryInterval",
    "RateLimiter",
    "check_token",
    "connection_cap",
    "rate_limit_log",
]
