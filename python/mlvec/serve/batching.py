"""Thread pools that run native calls for the event loop, combining small concurrent requests.

Each :class:`MicroBatcher` owns a queue and a few threads. A thread takes the oldest job and,
when micro-batching is on, every queued job with the same key (same collection, ``k`` and
parameters; or the same encoder and text role), and runs them as one call: concurrent
single-query searches become one native search over a ``[n, dim]`` matrix, concurrent texts
one encoder forward pass. Nothing waits for a batch to fill: a job alone in the queue runs at
once, and jobs batch only when they arrive while the threads are busy, so batching adds no
latency at low load and saves per-call overhead at high load. The queue is bounded: past
``max_queue`` waiting jobs a submission fails with 503, which keeps the latency of accepted
requests bounded instead of letting the queue grow without end.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlvec.serve.errors import ApiError

# Queued jobs a thread looks through for partners of the one it took (bounds the time the
# queue lock is held when the queue is long).
_SCAN = 256


@dataclass
class Job:
    """One request's call: ``key`` groups it with compatible jobs (``None``: runs alone), ``size``
    counts its rows towards ``max_batch``."""

    key: Hashable | None
    size: int
    data: Any
    loop: asyncio.AbstractEventLoop = field(repr=False)
    future: asyncio.Future = field(repr=False)


def _resolve(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away and the request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class MicroBatcher:
    """``run(datas) -> results`` executes a group of compatible jobs in one call."""

    def __init__(self, name: str, run: Callable[[Sequence[Any]], Sequence[Any]], *, threads: int,
                 micro_batch: bool, max_batch: int, max_queue: int) -> None:
        self._run = run
        self.micro_batch = micro_batch
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running = 0
        self._stopping = False
        self.batches = 0  # calls made
        self.jobs = 0  # jobs run
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)]
        for t in self._threads:
            t.start()

    @property
    def depth(self) -> int:
        """Jobs waiting or running."""
        return len(self._queue) + self._running

    async def submit(self, key: Hashable | None, size: int, data: Any) -> Any:
        loop = asyncio.get_running_loop()
        job = Job(key, size, data, loop, loop.create_future())
        with self._cond:
            if self._stopping:
                raise ApiError(503, "the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise ApiError(503, f"overloaded: {len(self._queue)} requests are waiting; retry shortly",
                               headers={"Retry-After": "1"})
            self._queue.append(job)
            self._cond.notify()
        return await job.future

    def _take(self) -> list[Job] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            group = [first]
            if self.micro_batch and first.key is not None:
                rows = first.size
                kept: list[Job] = []
                scanned = 0
                while self._queue and scanned < _SCAN and rows < self.max_batch:
                    job = self._queue.popleft()
                    scanned += 1
                    if job.key == first.key and rows + job.size <= self.max_batch:
                        group.append(job)
                        rows += job.size
                    else:
                        kept.append(job)
                self._queue.extendleft(reversed(kept))
            self._running += len(group)
            return group

    def _work(self) -> None:
        while (group := self._take()) is not None:
            try:
                results = self._run([job.data for job in group])
                outcomes = [(r, None) for r in results]
            except BaseException as e:  # delivered to every request of the group
                outcomes = [(None, e)] * len(group)
            finally:
                with self._cond:
                    self._running -= len(group)
                    self.batches += 1
                    self.jobs += len(group)
            for job, (result, error) in zip(group, outcomes, strict=True):
                try:
                    job.loop.call_soon_threadsafe(_resolve, job.future, result, error)
                except RuntimeError:
                    pass  # the event loop has closed

    def close(self) -> None:
        """Finish the queued jobs, then stop the threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()
