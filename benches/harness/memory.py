"""Memory: resident and peak RSS of this process, free memory, the CPU's last-level cache (and a
reader that evicts it), numpy's read bandwidth (what a memory-bound kernel is compared with), and
CUDA peak allocation.

RSS figures come from Linux's ``/proc/self``: ``VmRSS`` now, ``VmHWM`` the peak, which writing
``5`` to ``/proc/self/clear_refs`` resets to the current RSS (so a peak can be taken over one
block of code, exactly, without sampling).
"""

from __future__ import annotations

import gc
import glob
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from harness.timing import median_seconds


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_bytes() -> int:
    """Resident memory of this process now."""
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (since it started, or since :func:`reset_peak_rss`)."""
    return _status_bytes("VmHWM")


def reset_peak_rss() -> None:
    """Make the peak RSS the current RSS (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def available_bytes() -> int:
    """Memory the system can still give without swapping (``MemAvailable``); a huge number if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


class PeakRss:
    """RSS over a block: ``grown`` is the peak above the start, ``kept`` what is still held at the end.

    Example::

        >>> with PeakRss() as mem:
        ...     index.add(x)
        >>> mem.grown, mem.kept
    """

    def __enter__(self) -> PeakRss:
        gc.collect()
        reset_peak_rss()
        self.start = rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = peak_rss_bytes()
        self.end = rss_bytes()
        self.grown = self.peak - self.start
        self.kept = self.end - self.start


def last_level_cache_bytes() -> int:
    """Size of the CPU's largest cache (Linux sysfs), or 64 MiB where it cannot be read."""
    sizes = []
    for path in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        with open(path) as f:
            text = f.read().strip()
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        try:
            sizes.append(int(text.rstrip("KMG")) * mult)
        except ValueError:
            pass
    return max(sizes, default=64 << 20)


class EvictCache:
    """Reads an array 1.5x the last-level cache, pushing the inputs of the previous call out.

    Some machines' last-level cache (260 MiB on one seen here) holds most of a benchmark's
    working set, so without this each method would read part of its input from the cache, more
    or less depending on what the method before it read. Pass it as
    :func:`harness.timing.round_robin`'s ``before``.
    """

    def __init__(self) -> None:
        self.buf = np.ones(int(1.5 * last_level_cache_bytes()) // 4, np.float32)

    def __call__(self) -> None:
        self.buf.sum()


def read_bandwidth(nbytes: int, *, threads: int = 1, repeat: int = 3) -> float:
    """GB/s of numpy reading an ``nbytes`` buffer, split over ``threads`` threads.

    The best of two vectorised reads (a uint8 max and a uint64 sum), each timed as the median of
    ``repeat`` runs of enough passes to read about 256 MB, so a buffer that fits a cache is read
    from that cache level (as a scan of codes of the same size would be), and one larger than the
    caches from main memory. numpy releases the GIL in these reductions, so threads run in parallel.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    # Each thread's part a multiple of 64 bytes, so it can be read as uint64 as well.
    part = max(nbytes // threads, 1 << 16) // 64 * 64
    buf = np.ones(part * threads, np.uint8)
    parts = [buf[i * part : (i + 1) * part] for i in range(threads)]
    passes = max(1, (256 << 20) // buf.nbytes)
    best = 0.0
    with ThreadPoolExecutor(threads) as pool:
        for read in (np.max, lambda a: a.view(np.uint64).sum()):

            def run(read: Callable[[np.ndarray], object] = read) -> None:
                for _ in range(passes):
                    if threads == 1:
                        read(buf)
                    else:
                        list(pool.map(read, parts))

            seconds = median_seconds(run, repeat, warmup=1)
            best = max(best, passes * buf.nbytes / seconds / 1e9)
    return best


def cuda_peak_bytes(fn: Callable[[], object]) -> int:
    """Bytes torch allocated on the GPU at peak during ``fn()``, above what was allocated before."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base
