"""Readers and writers at once: every search sees each write wholly or not at all."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
prom_parser = pytest.importorskip("prometheus_client.parser")

DIM = 16
GROUP_A = list(range(10))  # replaced as a whole, again and again
GROUP_B = list(range(100, 110))  # deleted as a whole and written back


def group_vectors(ids: list[int], g: int) -> list[list[float]]:
    v = np.random.default_rng(g).standard_normal((len(ids), DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).tolist()


def test_searches_see_whole_writes(server_factory):
    srv = server_factory("--search-threads", "2")
    c = httpx.Client(base_url=srv.url, timeout=30)
    c.post("/v1/collections", json={"name": "c", "dim": DIM, "metric": "cosine"}).raise_for_status()
    c.post("/v1/collections/c/points", json={"ids": GROUP_A, "vectors": group_vectors(GROUP_A, 0),
                                             "payloads": [{"g": 0}] * 10}).raise_for_status()
    stop = threading.Event()
    problems: list[str] = []
    counts = {"searches": 0, "writes": 0}

    def replace_a():
        with httpx.Client(base_url=srv.url, timeout=30) as w:
            g = 0
            while not stop.is_set():
                g += 1
                w.post("/v1/collections/c/points", json={"ids": GROUP_A, "vectors": group_vectors(GROUP_A, g),
                                                         "payloads": [{"g": g}] * 10}).raise_for_status()
                counts["writes"] += 1

    def cycle_b():
        with httpx.Client(base_url=srv.url, timeout=30) as w:
            g = 1000
            while not stop.is_set():
                g += 1
                w.post("/v1/collections/c/points", json={"ids": GROUP_B, "vectors": group_vectors(GROUP_B, g),
                                                         "payloads": [{"g": g}] * 10}).raise_for_status()
                w.post("/v1/collections/c/points/delete", json={"ids": GROUP_B}).raise_for_status()
                counts["writes"] += 2

    def read(seed: int, filtered: bool):
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=srv.url, timeout=30) as r:
            while not stop.is_set():
                body = {"vector": rng.standard_normal(DIM).tolist(), "k": 25}
                if filtered:
                    body["filter"] = {"ids": GROUP_A + GROUP_B}
                hits = r.post("/v1/collections/c/search", json=body).json()["hits"]
                a = [h for h in hits if h["id"] in GROUP_A]
                b = [h for h in hits if h["id"] in GROUP_B]
                if len(a) != 10 or len({h["payload"]["g"] for h in a}) != 1:
                    problems.append(f"group A seen in part: {[(h['id'], h['payload']) for h in a]}")
                if len(b) not in (0, 10) or len({h["payload"]["g"] for h in b}) > 1:
                    problems.append(f"group B seen in part: {[(h['id'], h['payload']) for h in b]}")
                counts["searches"] += 1

    threads = [threading.Thread(target=replace_a), threading.Thread(target=cycle_b)]
    threads += [threading.Thread(target=read, args=(i, i % 3 == 0)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join(30)
    assert not problems, problems[:3]
    assert counts["searches"] > 200 and counts["writes"] > 20, counts
    families = {f.name: f for f in prom_parser.text_string_to_metric_families(c.get("/metrics").text)}
    per_call = {s.labels["pool"]: s.value for s in families["mlvec_pool_jobs_per_call"].samples}
    assert per_call["search"] >= 1.0, per_call
    c.close()


def test_micro_batcher_combines_waiting_compatible_jobs():
    """Jobs that queue while the threads are busy run as one call per key, in order; a job
    alone runs at once; errors reach every job of the call."""
    import asyncio

    from mlvec.serve.batching import MicroBatcher

    calls: list[list] = []
    gate = threading.Event()

    def run(datas):
        if datas[0] == "block":
            gate.wait(10)
        if "boom" in datas:
            raise ValueError("boom")
        calls.append(list(datas))
        return [f"r{d}" for d in datas]

    pool = MicroBatcher("t", run, threads=1, micro_batch=True, max_batch=3, max_queue=100)

    async def main():
        blocker = asyncio.ensure_future(pool.submit(None, 1, "block"))
        await asyncio.sleep(0.05)  # the thread is now inside the blocking call
        jobs = [asyncio.ensure_future(pool.submit(key, 1, d)) for key, d in
                [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("a", 5), (None, 6)]]
        await asyncio.sleep(0.05)
        assert pool.depth == 7
        gate.set()
        results = await asyncio.gather(blocker, *jobs)
        assert results == ["rblock", "r1", "r2", "r3", "r4", "r5", "r6"]
        failing = [asyncio.ensure_future(pool.submit("c", 1, d)) for d in ("x", "boom")]
        outcomes = await asyncio.gather(*failing, return_exceptions=True)
        assert all(isinstance(o, (ValueError, str)) for o in outcomes)
        return calls

    calls = asyncio.run(main())
    pool.close()
    assert calls[1:5] == [[1, 3, 4], [2], [5], [6]]  # "a" up to max_batch rows, then the rest in order
