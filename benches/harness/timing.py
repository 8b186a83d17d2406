"""Timers. Every figure a benchmark prints is a median over repeated calls.

- :func:`median_seconds` times one callable;
- :func:`round_robin` times several in turn, round after round, so the drift of a shared machine
  falls on all of them alike (optionally reading a buffer larger than the cache before each
  timed call: :class:`harness.memory.EvictCache`);
- :func:`one_query_per_call` is the serving pattern timed by the index benchmarks;
- :func:`cuda_median_ms` times GPU work with CUDA events.
"""

from __future__ import annotations

import statistics
import threading
from collections.abc import Callable, Hashable, Mapping
from time import perf_counter, sleep
from typing import TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)


def median_seconds(fn: Callable[[], object], repeat: int = 3, *, warmup: int = 0) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeat`` timed calls, after ``warmup`` untimed ones."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = perf_counter()
        fn()
        times.append(perf_counter() - t0)
    return statistics.median(times)


def round_robin(
    methods: Mapping[K, Callable[[], object]],
    repeat: int,
    *,
    before: Callable[[], None] | None = None,
    pause: float = 0.05,
) -> dict[K, list[float]]:
    """Seconds of every call of each method, the methods timed in turn ``repeat`` times.

    Each method is called once untimed first. The order reverses every other round (A B C, C B A,
    ...) so no method always follows the same one. Before each timed call ``before`` runs
    (untimed, e.g. a :class:`harness.memory.EvictCache`), then a ``pause`` lets the previous
    method's worker threads (OpenMP, rayon) stop spinning, so no method pays for the one before it.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    for fn in methods.values():
        fn()
    keys = list(methods)
    times: dict[K, list[float]] = {key: [] for key in keys}
    for r in range(repeat):
        for key in keys if r % 2 == 0 else reversed(keys):
            if before is not None:
                before()
            if pause:
                sleep(pause)
            t0 = perf_counter()
            methods[key]()
            times[key].append(perf_counter() - t0)
    return times


def medians(times: Mapping[K, list[float]]) -> dict[K, float]:
    """The median of each list of :func:`round_robin`'s result."""
    return {key: statistics.median(v) for key, v in times.items()}


def one_query_per_call(search_one: Callable[[np.ndarray], object], queries: np.ndarray, threads: int) -> None:
    """Search every row of ``queries`` ``[nq, d]`` with its own call ``search_one(row)``, the rows
    split over ``threads`` Python threads calling concurrently (the serving pattern of a request
    handler)."""

    def run(part: np.ndarray) -> None:
        for row in part:
            search_one(row)

    if threads == 1:  # on this thread: starting one would be timed too
        run(queries)
        return
    workers = [threading.Thread(target=run, args=(p,)) for p in np.array_split(queries, threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def cuda_median_ms(fn: Callable[[], object], repeat: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` on the current CUDA stream, by CUDA events, after ``warmup`` calls."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)
