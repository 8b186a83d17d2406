"""Crash tests: the server is SIGKILLed at random moments while a writer sends upserts and deletes.

After every restart each acknowledged upsert is present (with its payload and its vector) and
each acknowledged delete absent; a write in flight at the kill may or may not have landed, but
nothing else may. Snapshot folders are always whole: an interrupted one is a dot-folder that the
next start removes.
"""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

DIM = 32
IDS = 400


def vector(i: int, version: int) -> list[float]:
    v = np.random.default_rng(i * 100_003 + version).standard_normal(DIM)
    return (v / np.linalg.norm(v)).tolist()


def check_snapshots(coll_dir: Path) -> None:
    """Every finished snapshot folder has its three files and an index that loads whole."""
    from mlvec.index import load

    for snap in (coll_dir / "snapshots").iterdir():
        if snap.name.startswith("."):
            continue  # interrupted: never read, removed at the next start
        meta = json.loads((snap / "snapshot.json").read_text())
        assert meta["seq"] == int(snap.name)
        index = load(snap / "index.mlvec", mmap=False)
        assert len(index) == meta["points"]
        payload_lines = (snap / "payloads.jsonl").read_text().splitlines()
        assert len(payload_lines) <= meta["points"]


class Writer(threading.Thread):
    """Sends random upserts (payload {"v": version}) and deletes until the connection fails,
    recording what was acknowledged; the write in flight at the end is the only unknown."""

    def __init__(self, url: str, expected: dict[int, int | None], rng: random.Random, version: list[int]) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=url, timeout=30)
        self.expected = expected
        self.rng = rng
        self.version = version
        self.inflight: dict[int, int | None] = {}
        self.acked = 0

    def run(self) -> None:
        rng = self.rng
        try:
            while True:
                ids = rng.sample(range(IDS), rng.randint(1, 12))
                if rng.random() < 0.7:
                    self.version[0] += 1
                    v = self.version[0]
                    self.inflight = dict.fromkeys(ids, v)
                    r = self.client.post("/v1/collections/c/points", json={
                        "ids": ids, "vectors": [vector(i, v) for i in ids], "payloads": [{"v": v}] * len(ids)})
                else:
                    self.inflight = dict.fromkeys(ids)
                    r = self.client.post("/v1/collections/c/points/delete", json={"ids": ids})
                assert r.status_code == 200, r.text
                self.expected.update(self.inflight)
                self.inflight = {}
                self.acked += 1
                if rng.random() < 0.05:
                    self.client.post("/v1/collections/c/snapshot")
        except httpx.HTTPError:
            pass  # killed
        finally:
            self.client.close()


def verify(url: str, expected: dict[int, int | None], inflight: dict[int, int | None]) -> None:
    """The server's state is the acknowledged one, up to the write in flight; ``expected`` is
    updated with how that write turned out."""
    with httpx.Client(base_url=url, timeout=30) as c:
        got = c.post("/v1/collections/c/points/get", json={"ids": list(range(IDS))}).json()
        state: dict[int, int | None] = {p["id"]: p["payload"]["v"] for p in got["points"]}
        for i in range(IDS):
            actual = state.get(i)
            allowed = {expected.get(i)} | ({inflight[i]} if i in inflight else set())
            assert actual in allowed, f"id {i}: stored version {actual}, acknowledged {expected.get(i)}"
        # the in-flight write landed whole or not at all
        changing = [i for i in inflight if expected.get(i) != inflight[i]]
        assert len({state.get(i) == inflight[i] for i in changing}) <= 1, "a write landed in part"
        for i in range(IDS):
            expected[i] = state.get(i)
        # the stored vectors are the acknowledged ones: each point is its own best match, score 1
        sample = [i for i in sorted(state)][:: max(1, len(state) // 20)]
        searches = [{"vector": vector(i, state[i]), "k": 1, "filter": {"ids": [i]}} for i in sample]
        if searches:
            res = c.post("/v1/collections/c/search/batch", json={"searches": searches}).json()["results"]
            for i, r in zip(sample, res, strict=True):
                assert r["hits"][0]["id"] == i and r["hits"][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_acknowledged_writes_survive_sigkill(server_factory, tmp_path):
    data = tmp_path / "crash"
    srv = server_factory("--snapshot-points", "150", data=data)
    httpx.post(srv.url + "/v1/collections", json={"name": "c", "dim": DIM, "metric": "cosine"}).raise_for_status()
    rng = random.Random(1234)
    expected: dict[int, int | None] = {}
    version = [0]
    deadline = time.monotonic() + 120
    total = 0
    for cycle in range(20):
        assert time.monotonic() < deadline, f"crash test over its time budget at cycle {cycle}"
        w = Writer(srv.url, expected, rng, version)
        w.start()
        time.sleep(rng.uniform(0.05, 0.6))
        srv.kill()
        w.join(30)
        total += w.acked
        check_snapshots(data / "collections" / "c")
        srv.start()
        verify(srv.url, expected, w.inflight)
        assert not [p for p in (data / "collections" / "c" / "snapshots").iterdir() if p.name.startswith(".")]
    assert total > 100, f"only {total} writes were acknowledged in 20 cycles"
    assert len(list((data / "collections" / "c" / "snapshots").iterdir())) == 1


def test_kill_during_snapshot_keeps_the_old_or_the_new_one(server_factory, tmp_path):
    """A collection big enough that a snapshot takes a while, killed while one is written."""
    data = tmp_path / "snap"
    srv = server_factory("--snapshot-points", "100000000", data=data)
    c = httpx.Client(base_url=srv.url, timeout=60)
    c.post("/v1/collections", json={"name": "c", "dim": DIM, "metric": "cosine"}).raise_for_status()
    rng = np.random.default_rng(0)
    n = 40_000
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    for lo in range(IDS, n, 1000):
        ids = list(range(lo, min(lo + 1000, n)))
        c.post("/v1/collections/c/points", json={"ids": ids, "vectors": x[lo : lo + len(ids)].tolist(),
                                                 "payloads": [{"v": 0}] * len(ids)}).raise_for_status()
    t0 = time.perf_counter()
    c.post("/v1/collections/c/snapshot").raise_for_status()
    snap_s = time.perf_counter() - t0
    c.close()
    expected: dict[int, int | None] = {}
    interrupted = 0
    for cycle in range(6):
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            ids = [cycle * 10 + j for j in range(10)]
            c.post("/v1/collections/c/points", json={"ids": ids, "vectors": [vector(i, cycle + 1) for i in ids],
                                                     "payloads": [{"v": cycle + 1}] * 10}).raise_for_status()
            expected.update(dict.fromkeys(ids, cycle + 1))
            threading.Thread(target=lambda: _quietly(c.post, "/v1/collections/c/snapshot"), daemon=True).start()
            time.sleep(snap_s * (0.2 + 0.6 * cycle / 5))
            srv.kill()
        snaps = data / "collections" / "c" / "snapshots"
        interrupted += any(p.name.startswith(".tmp-") for p in snaps.iterdir())
        check_snapshots(data / "collections" / "c")
        srv.start()
        verify(srv.url, expected, {})
        assert httpx.get(srv.url + "/v1/collections/c").json()["count"] == n - IDS + len(
            [i for i, v in expected.items() if v is not None])
    assert interrupted >= 1, f"no kill landed inside a snapshot (a snapshot takes {snap_s * 1e3:.0f} ms)"


def _quietly(fn, *args):
    try:
        fn(*args)
    except httpx.HTTPError:
        pass
