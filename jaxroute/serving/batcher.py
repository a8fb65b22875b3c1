"""Micro-batching for ``serve``: concurrent requests share one encoder + router call.

Handlers :meth:`Batcher.submit` their prompts; one task collects what arrives within
``window_s`` into a batch of at most ``max_batch`` prompts, runs the encoder and the two
networks once in a worker thread (the event loop keeps serving), and hands each request
its rows.

Fairness (``docs/reliability_server.md``): a batch holds at most ``max_batch`` prompts
and ``max_chars`` characters, so a large request (many or long prompts) is cut into
pieces, and each batch is filled first with the requests that have not been served at
all yet (in arrival order), then with one piece of each request already started (round
robin). A request that arrives while a large one is being served therefore waits for
the batch in progress and then its own, both bounded, never for the large request's
remaining pieces. While the server drains (SIGTERM) the order changes: one request at
a time is served to its end, so as many requests as possible finish within the grace
period instead of all finishing together at its end.

Isolation: if a batch fails, each request in it is retried alone, so only the request
whose prompts fail gets the error (a 500 naming the exception type).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging

import numpy as np

from jaxroute.serving.requests import ApiError

log = logging.getLogger("jaxroute.serve")

# A prompt's cost in a batch is its length in characters up to this cap: the encoder
# truncates prompts to its max_length tokens (about 4 characters a token), so a longer
# prompt costs no more to embed.
CHARS_CAP = 2048


@dataclasses.dataclass(eq=False)
class _Job:
    prompts: list[str]
    future: asyncio.Future
    next: int = 0  # first prompt not yet taken into a batch
    parts: list = dataclasses.field(default_factory=list)  # (scores, costs, truncated)

    @property
    def left(self) -> int:
        return len(self.prompts) - self.next


class Batcher:
    """Collects prompts from concurrent requests into fair, bounded encoder calls."""

    def __init__(
        self, router, *, window_s: float = 0.005, max_batch: int = 32, max_chars: int = 4096
    ):
        self.router = router
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_chars = max_chars
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="encoder")
        self.batches = 0
        self.prompts = 0
        self.retried_batches = 0
        self.finish_first = False  # set while draining (see take)
        self._new: collections.deque[_Job] = collections.deque()
        self._started: collections.deque[_Job] = collections.deque()
        self._wake = asyncio.Event()
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
        job = _Job(list(prompts), asyncio.get_running_loop().create_future())
        self._new.append(job)
        self._wake.set()
        return await job.future

    def compute(self, prompts: list[str]):
        x, truncated = self.router.embed(prompts, batch_size=self.max_batch)
        scores, costs = self.router.scores_and_costs(x)
        return np.asarray(scores), np.asarray(costs), np.asarray(truncated)

    # ------------------------------------------------------------------ scheduling
    def _queued(self) -> int:
        return sum(j.left for q in (self._new, self._started) for j in q)

    def take(self) -> list[tuple[_Job, int, int]]:
        """The next batch: ``(job, start, stop)`` pieces, at most ``max_batch`` prompts
        and ``max_chars`` characters (each prompt counted up to :data:`CHARS_CAP`; a
        batch holds at least one prompt); requests not yet started first, then one piece
        of each started one in turn."""
        if self.finish_first:  # draining: one request at a time, to its end
            self._started.extend(self._new)
            self._new.clear()
        room, chars, picks, again = self.max_batch, self.max_chars, [], []
        for queue in (self._new, self._started):
            while queue and room > 0 and chars > 0:
                job = queue.popleft()
                if job.future.done():  # the client went away
                    continue
                a = b = job.next
                while b < len(job.prompts) and b - a < room:
                    cost = min(len(job.prompts[b]), CHARS_CAP)
                    if cost > chars and (picks or b > a):
                        break
                    chars -= cost
                    b += 1
                if b == a:  # its next prompt does not fit: first in line next time
                    queue.appendleft(job)
                    break
                picks.append((job, a, b))
                job.next = b
                room -= b - a
                if job.left:
                    again.append(job)
        if self.finish_first:
            self._started.extendleft(reversed(again))
        else:
            self._started.extend(again)
        return picks

    async def _gather(self, loop) -> None:
        """Waits for a first request, then up to ``window_s`` for a full batch."""
        while not self._new and not self._started:
            self._wake.clear()
            await self._wake.wait()
        deadline = loop.time() + self.window_s
        while self._queued() < self.max_batch:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                break

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._gather(loop)
            picks = self.take()
            if picks:
                await self._serve(loop, picks)

    async def _serve(self, loop, picks) -> None:
        prompts = [p for job, a, b in picks for p in job.prompts[a:b]]
        try:
            out = await loop.run_in_executor(self.executor, self.compute, prompts)
        except Exception as e:  # noqa: BLE001 - isolated below, request by request
            if len(picks) == 1:
                self._fail(picks[0][0], e)
                return
            log.warning(
                "a batch of %d requests failed (%s); retrying each alone",
                len(picks),
                type(e).__name__,
            )
            self.retried_batches += 1
            for pick in picks:
                if not pick[0].future.done():
                    await self._serve(loop, [pick])
            return
        self.batches += 1
        self.prompts += len(prompts)
        start = 0
        for job, a, b in picks:
            k = b - a
            job.parts.append(tuple(arr[start : start + k] for arr in out))
            start += k
            if not job.left and not job.future.done():
                job.future.set_result(
                    tuple(np.concatenate([part[i] for part in job.parts]) for i in range(3))
                )

    def _fail(self, job: _Job, e: Exception) -> None:
        log.error("routing failed for a request of %d prompts: %r", len(job.prompts), e)
        if not job.future.done():
            job.future.set_exception(ApiError(500, f"routing failed: {type(e).__name__}", "server"))
        job.next = len(job.prompts)  # its remaining pieces are dropped
        for q in (self._new, self._started):
            if job in q:
                q.remove(job)


__all__ = ["Batcher"]
