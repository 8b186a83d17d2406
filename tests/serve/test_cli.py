"""``mlvec serve`` refusals and ``mlvec client search|upsert|delete`` against a running server."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")


def mlvec(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlvec", *args], capture_output=True, text=True, timeout=120, env=env)


def test_serve_refuses_unsafe_or_impossible_settings(tmp_path):
    r = mlvec("serve", "--data", str(tmp_path / "d"), "--host", "0.0.0.0")
    assert r.returncode == 2 and "loopback only" in r.stderr
    r = mlvec("serve", "--data", str(tmp_path / "d"), "--workers", "2")
    assert r.returncode == 2 and "--read-only" in r.stderr
    r = mlvec("serve", "--data", str(tmp_path / "d"), "--encoder", str(tmp_path / "missing"), "--port", "1")
    assert r.returncode == 2


def test_a_second_server_on_the_same_folder_is_refused(server_factory, tmp_path):
    first = server_factory(data=tmp_path / "shared")
    second = server_factory(data=tmp_path / "shared", start=False)
    with pytest.raises(RuntimeError, match="another mlvec serve"):
        second.start()
    assert httpx.get(first.url + "/readyz").status_code == 200


def test_client_upsert_search_delete(server_factory, tmp_path):
    srv = server_factory()
    httpx.post(srv.url + "/v1/collections", json={"name": "v", "dim": 8}).raise_for_status()
    x = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ids.npy", np.arange(100, 120))
    r = mlvec("client", "upsert", "v", str(tmp_path / "x.npy"), "--ids", str(tmp_path / "ids.npy"), "--url", srv.url,
              "--batch", "7")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["upserted"] == 20
    np.save(tmp_path / "q.npy", x[[3, 4]])
    r = mlvec("client", "search", "v", "--queries", str(tmp_path / "q.npy"), "-k", "3", "--url", srv.url)
    assert r.returncode == 0, r.stderr
    ref = np.argsort(-(x[[3, 4]] @ x.T), axis=1)[:, :3] + 100
    assert [[h["id"] for h in res["hits"]] for res in json.loads(r.stdout)["results"]] == ref.tolist()
    r = mlvec("client", "delete", "v", "--ids", "103,104,999", "--url", srv.url)
    assert r.returncode == 0 and json.loads(r.stdout)["deleted"] == 2
    r = mlvec("client", "search", "v", "--text", "hello", "--url", srv.url)
    assert r.returncode == 2 and "409" in r.stderr and "no encoder" in r.stderr
    r = mlvec("client", "delete", "v", "--ids", "1", "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "cannot reach" in r.stderr


def test_imported_index_served_read_only_by_several_processes(server_factory, tmp_path):
    from mlvec.index import index_factory
    from mlvec.serve import import_index

    x = np.random.default_rng(1).standard_normal((500, 12)).astype(np.float32)
    index = index_factory(12, "Flat", metric="l2")
    index.add(x, np.arange(1000, 1500))
    data = tmp_path / "imported"
    import_index(data, "imp", index, payloads={1003: {"title": "three"}})
    with pytest.raises(ValueError, match="exists"):
        import_index(data, "imp", index)
    srv = server_factory("--read-only", "--workers", "2", data=data)
    hits = httpx.post(srv.url + "/v1/collections/imp/search", json={"vector": x[3].tolist(), "k": 2}).json()["hits"]
    assert hits[0] == {"id": 1003, "score": 0.0, "payload": {"title": "three"}}
    scores, ids = index.search(x[3], 2)
    assert [h["id"] for h in hits] == ids[0].tolist() and hits[1]["score"] == float(scores[0, 1])
    r = httpx.post(srv.url + "/v1/collections/imp/points/delete", json={"ids": [1003]})
    assert r.status_code == 405 and "read-only" in r.json()["error"]["message"]
    assert httpx.post(srv.url + "/v1/collections", json={"name": "new", "dim": 3}).status_code == 405
