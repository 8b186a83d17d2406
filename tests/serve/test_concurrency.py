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
    # concurrent unfiltered single-query searches were combined into shared native calls
    families = {f.name: f for f in prom_parser.text_string_to_metric_families(c.get("/metrics").text)}
    per_call = {s.labels["pool"]: s.value for s in families["mlvec_pool_jobs_per_call"].samples}
    assert per_call["search"] > 1.0, per_call
    c.close()
