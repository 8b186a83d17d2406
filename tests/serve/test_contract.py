"""The HTTP contract of ``mlvec serve``, against a real server process (keys, limits, e5 encoder).

The module's server is started without waiting for it to be ready, so the first test sees
``/readyz`` answer 503 while the encoder loads, then 200.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
prom_parser = pytest.importorskip("prometheus_client.parser")

DIM = 16


def vecs(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_error(r: httpx.Response, status: int, field: str | None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["status"] == status
    assert err["field"] == field, err
    if field is not None:
        assert field in err["message"]
    return err


@pytest.fixture(scope="module")
def srv(keyed_server):
    return keyed_server


@pytest.fixture(scope="module")
def keys(api_keys):
    return api_keys


@pytest.fixture
def w(srv, writer):
    srv.wait("/readyz", 120)
    with writer(srv) as c:
        yield c


@pytest.fixture
def coll(w):
    """A fresh 16-d cosine Flat collection with 50 points (payload {"n": i})."""
    name = f"c{time.monotonic_ns()}"
    assert w.post("/v1/collections", json={"name": name, "dim": DIM, "metric": "cosine"}).status_code == 201
    x = vecs(50)
    r = w.post(f"/v1/collections/{name}/points",
               json={"ids": list(range(50)), "vectors": x.tolist(), "payloads": [{"n": i} for i in range(50)]})
    assert r.status_code == 200, r.text
    yield name, x
    w.delete(f"/v1/collections/{name}")


def test_readyz_is_503_until_loaded_then_200(srv, keys):
    READ_KEY, _ = keys
    first = httpx.get(srv.url + "/readyz")
    assert first.status_code == 503, "the e5 encoder loads after the socket opens: the first answer is 'not ready'"
    assert first.json()["error"]["status"] == 503
    early = httpx.get(srv.url + "/v1/collections", headers={"api-key": READ_KEY})
    assert early.status_code in (503, 200)
    assert httpx.get(srv.url + "/livez").status_code == 200
    srv.wait("/readyz", 120)
    r = httpx.get(srv.url + "/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_openapi_schema_lists_every_route(srv):
    spec = httpx.get(srv.url + "/openapi.json").json()
    paths = set(spec["paths"])
    for p in ("/v1/collections", "/v1/collections/{name}", "/v1/collections/{name}/points",
              "/v1/collections/{name}/points/delete", "/v1/collections/{name}/points/get",
              "/v1/collections/{name}/search", "/v1/collections/{name}/search/batch",
              "/v1/collections/{name}/train", "/v1/collections/{name}/snapshot", "/livez", "/readyz", "/metrics"):
        assert p in paths, p
    search = spec["components"]["schemas"]["SearchRequest"]["properties"]
    assert {"vector", "text", "tokens", "k", "filter", "params"} <= set(search)
    assert httpx.get(srv.url + "/docs").status_code == 200


def test_keys_no_key_wrong_key_read_key_on_write(srv, coll, keys):
    READ_KEY, WRITE_KEY = keys
    name, x = coll
    url = f"{srv.url}/v1/collections/{name}"
    body = {"vector": x[0].tolist(), "k": 3}
    r = httpx.post(url + "/search", json=body)
    assert_error(r, 401, None)
    assert r.headers["www-authenticate"] == "Bearer"
    assert_error(httpx.post(url + "/search", json=body, headers={"api-key": "not-a-key-0123456789"}), 401, None)
    assert_error(httpx.post(url + "/search", json=body, headers={"Authorization": "Bearer wrong-0123456789abc"}),
                 401, None)
    for key in (READ_KEY, WRITE_KEY):  # a write key reads too
        assert httpx.post(url + "/search", json=body, headers={"api-key": key}).status_code == 200
    upsert = {"ids": [1000], "vectors": [x[0].tolist()]}
    assert_error(httpx.post(url + "/points", json=upsert, headers={"api-key": READ_KEY}), 403, None)
    assert_error(httpx.delete(url, headers={"api-key": READ_KEY}), 403, None)
    assert_error(httpx.post(srv.url + "/v1/collections", json={"name": "x", "dim": 4},
                            headers={"Authorization": f"Bearer {READ_KEY}"}), 403, None)
    assert httpx.post(url + "/points", json=upsert, headers={"api-key": WRITE_KEY}).status_code == 200


def test_collections_create_list_describe_drop(w):
    r = w.post("/v1/collections", json={"name": "life", "dim": 8, "index": "hnsw16", "metric": "l2"})
    assert r.status_code == 201, r.text
    info = r.json()
    assert (info["name"], info["kind"], info["dim"], info["index"], info["metric"], info["count"]) == (
        "life", "single", 8, "HNSW16", "l2", 0)
    assert_error(w.post("/v1/collections", json={"name": "life", "dim": 8}), 409, "name")
    assert "life" in [c["name"] for c in w.get("/v1/collections").json()["collections"]]
    assert w.get("/v1/collections/life").json()["index"] == "HNSW16"
    assert w.delete("/v1/collections/life").json() == {"dropped": "life"}
    assert_error(w.get("/v1/collections/life"), 404, "name")
    assert_error(w.delete("/v1/collections/life"), 404, "name")
    # a dropped name can be created again, empty
    assert w.post("/v1/collections", json={"name": "life", "dim": 4}).json()["count"] == 0
    w.delete("/v1/collections/life")


@pytest.mark.parametrize("name", ["..", "a/b", ".hidden", "-x", "x" * 65, "é", "a b", ""])
def test_collection_names_are_never_paths(w, name):
    assert_error(w.post("/v1/collections", json={"name": name, "dim": 4}), 400, "name")


def test_path_traversal_in_the_url_is_refused(w):
    for path in ("/v1/collections/..%2F..%2Fetc", "/v1/collections/%2E%2E"):
        r = w.get(path)
        assert r.status_code in (400, 404), r.text
        assert "error" in r.json()


def test_create_refuses_bad_settings(w):
    assert_error(w.post("/v1/collections", json={"name": "m", "kind": "multi", "dim": 4}), 400, "kind")
    assert_error(w.post("/v1/collections", json={"name": "m", "kind": "sparse", "dim": 4}), 400, "kind")
    assert_error(w.post("/v1/collections", json={"name": "m", "dim": 4, "index": "IVF0,Nope"}), 400, "index")
    assert_error(w.post("/v1/collections", json={"name": "m", "dim": 5000}), 400, "dim")
    assert_error(w.post("/v1/collections", json={"name": "m", "dim": 0}), 400, "dim")
    assert_error(w.post("/v1/collections", json={"name": "m"}), 400, "dim")
    assert_error(w.post("/v1/collections", json={"name": "m", "dim": 4, "encoder": "nope"}), 400, "encoder")
    assert_error(w.post("/v1/collections", json={"name": "m", "dim": 4, "encoder": "e5"}), 400, "dim")
    assert_error(w.post("/v1/collections", json={"name": "m", "dim": 4, "metric": "dot"}), 422, "metric")
    assert "m" not in [c["name"] for c in w.get("/v1/collections").json()["collections"]]


def test_upsert_search_get_delete_by_vector(w, coll):
    name, x = coll
    base = f"/v1/collections/{name}"
    hits = w.post(base + "/search", json={"vector": x[7].tolist(), "k": 5}).json()["hits"]
    ref = np.argsort(-(x @ x[7]), kind="stable")[:5]
    assert [h["id"] for h in hits] == ref.tolist()
    assert hits[0]["payload"] == {"n": 7}
    np.testing.assert_allclose([h["score"] for h in hits], (x @ x[7])[ref], rtol=1e-5)
    # replace: new vector and no payload
    r = w.post(base + "/points", json={"ids": [7], "vectors": [(-x[7]).tolist()]})
    assert r.json()["upserted"] == 1 and r.json()["seq"] >= 2
    hits = w.post(base + "/search", json={"vector": (-x[7]).tolist(), "k": 1}).json()["hits"]
    assert hits[0]["id"] == 7 and hits[0]["payload"] is None and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert "payload" not in w.post(base + "/search", json={"vector": x[0].tolist(), "k": 1,
                                                           "with_payload": False}).json()["hits"][0]
    # filter by ids
    hits = w.post(base + "/search", json={"vector": x[0].tolist(), "k": 10, "filter": {"ids": [3, 4, 999]}}).json()
    assert sorted(h["id"] for h in hits["hits"]) == [3, 4]
    # delete (absent ids ignored), get
    assert w.post(base + "/points/delete", json={"ids": [3, 3, 999]}).json()["deleted"] == 1
    got = w.post(base + "/points/get", json={"ids": [3, 4]}).json()
    assert got == {"points": [{"id": 4, "payload": {"n": 4}}], "missing": [3]}
    assert w.get(base).json()["count"] == 49
    # batch search answers in order
    res = w.post(base + "/search/batch", json={"searches": [{"vector": x[i].tolist(), "k": 1} for i in (1, 2, 5)]})
    assert [r["hits"][0]["id"] for r in res.json()["results"]] == [1, 2, 5]


def test_text_upsert_and_search_use_the_encoder_with_its_prefixes(w):
    from mlvec.encoders import load_e5

    docs = ["The dog chased the ball across the park.", "El perro persiguió la pelota por el parque.",
            "Interest rates rose again this quarter.", "Photosynthesis turns light into chemical energy."]
    assert w.post("/v1/collections", json={"name": "texts", "encoder": "e5"}).json()["dim"] == 384
    r = w.post("/v1/collections/texts/points", json={"ids": [10, 11, 12, 13], "texts": docs,
                                                     "payloads": [{"text": d} for d in docs]})
    assert r.status_code == 200, r.text
    query = "a dog playing with a ball"
    hits = w.post("/v1/collections/texts/search", json={"text": query, "k": 4}).json()["hits"]
    enc = load_e5()
    d = enc.encode(docs).astype(np.float64)
    q = enc.encode([query], is_query=True).astype(np.float64)[0]
    ref = np.argsort(-(d @ q))
    assert [h["id"] for h in hits] == (ref + 10).tolist()
    np.testing.assert_allclose([h["score"] for h in hits], (d @ q)[ref], atol=2e-3)
    batch = w.post("/v1/collections/texts/search/batch",
                   json={"searches": [{"text": query, "k": 1}, {"vector": d[2].tolist(), "k": 1}]}).json()
    assert [b["hits"][0]["id"] for b in batch["results"]] == [int(ref[0]) + 10, 12]
    w.delete("/v1/collections/texts")


def test_limits_answer_4xx_naming_the_field(w, coll):
    name, x = coll
    base = f"/v1/collections/{name}"
    q = x[0].tolist()
    big = json.dumps({"ids": list(range(60)), "vectors": [[0.123456789] * 2000] * 60}).encode()  # > 1 MiB
    assert_error(w.post(base + "/points", content=big, headers={"content-type": "application/json"}), 413, "body")
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))  # no Content-Length: counted while read
    assert_error(w.post(base + "/points", content=chunks, headers={"content-type": "application/json"}), 413, "body")
    assert_error(w.post(base + "/points", json={"ids": list(range(65)), "vectors": vecs(65).tolist()}), 400, "ids")
    assert_error(w.post(base + "/search", json={"vector": q, "k": 51}), 400, "k")
    assert_error(w.post(base + "/search", json={"vector": q, "k": 0}), 400, "k")
    assert_error(w.post(base + "/search", json={"vector": q[:5]}), 400, "vector")
    assert_error(w.post(base + "/points", json={"ids": [1, 2], "vectors": [q, q[:3]]}), 400, "vectors[1]")
    assert_error(w.post(base + "/search/batch", json={"searches": [{"vector": q}] * 65}), 400, "searches")
    assert_error(w.post(base + "/search/batch", json={"searches": []}), 400, "searches")
    assert_error(w.post(base + "/search/batch", json={"searches": [{"vector": q}, {"vector": q, "k": 99}]}),
                 400, "searches[1].k")
    assert_error(w.post(base + "/search", json={"vector": q, "filter": {"ids": list(range(100_001))}}),
                 400, "filter.ids")
    payload = {"blob": "x" * 70_000}
    assert_error(w.post(base + "/points", json={"ids": [1], "vectors": [q], "payloads": [payload]}), 400, "payloads[0]")
    w.post("/v1/collections", json={"name": "lim-text", "encoder": "e5"})
    assert_error(w.post("/v1/collections/lim-text/search", json={"text": "y" * 201}), 400, "text")
    assert_error(w.post("/v1/collections/lim-text/points", json={"ids": [1, 2], "texts": ["ok", "y" * 201]}),
                 400, "texts[1]")
    assert_error(w.post("/v1/collections/lim-text/search", json={"text": "   "}), 400, "text")
    w.delete("/v1/collections/lim-text")
    assert w.get(base).json()["count"] == 50  # nothing above changed the collection


def test_bad_fields_are_refused_whole(w, coll):
    name, x = coll
    base = f"/v1/collections/{name}"
    q = x[0].tolist()
    seq = w.get(base).json()["last_seq"]
    nan = json.dumps({"ids": [100, 101], "vectors": [q, [float("nan")] * DIM]})  # NaN is not JSON; Python sends it
    assert_error(w.post(base + "/points", content=nan, headers={"content-type": "application/json"}), 400, "vectors[1]")
    assert_error(w.post(base + "/points", json={"ids": [100], "vectors": [[1e39] * DIM]}), 400, "vectors[0]")
    assert_error(w.post(base + "/points", json={"ids": [100], "vectors": [[0.0] * DIM]}), 400, "vectors[0]")
    assert_error(w.post(base + "/points", json={"ids": [100, 100], "vectors": [q, q]}), 400, "ids")
    assert_error(w.post(base + "/points", json={"ids": [100, 101], "vectors": [q]}), 400, "vectors")
    assert_error(w.post(base + "/points", json={"ids": [100], "vectors": [q], "payloads": [1, 2]}), 400, "payloads")
    assert_error(w.post(base + "/points", json={"ids": [-1], "vectors": [q]}), 422, "ids[0]")
    assert_error(w.post(base + "/points", json={"ids": [2**63], "vectors": [q]}), 422, "ids[0]")
    assert_error(w.post(base + "/points", json={"ids": ["7"], "vectors": [q]}), 422, "ids[0]")
    assert_error(w.post(base + "/points", json={"ids": [100], "vectors": [q], "texts": ["a"]}), 400, "vectors")
    assert_error(w.post(base + "/points", json={"ids": [100]}), 400, "vectors")
    assert_error(w.post(base + "/points", json={"ids": [], "vectors": []}), 400, "ids")
    assert_error(w.post(base + "/points", json={"ids": [100], "tokens": [[q]]}), 400, "tokens")
    assert_error(w.post(base + "/points", json={"ids": [100], "texts": ["hello"]}), 409, "texts")
    assert_error(w.post(base + "/search", json={"vector": q, "nprob": 3}), 422, "nprob")
    assert_error(w.post(base + "/search", json={"vector": q, "k": "ten"}), 422, "k")
    assert_error(w.post(base + "/search", json={"vector": q, "text": "x"}), 400, "vector")
    assert_error(w.post(base + "/search", json={"k": 3}), 400, "vector")
    assert_error(w.post(base + "/search", json={"tokens": [q, q]}), 400, "tokens")
    assert_error(w.post(base + "/search", json={"vector": q, "params": {"nprobe": 4}}), 400, "params.nprobe")
    assert_error(w.post(base + "/search", json={"vector": q, "params": {"ef_search": 4}}), 400, "params.ef_search")
    assert_error(w.post(base + "/search", json={"vector": q, "params": {"rescore": 2}}), 400, "params.rescore")
    assert_error(w.post(base + "/search", content=b"{not json", headers={"content-type": "application/json"}),
                 422, "body")
    assert_error(w.post("/v1/collections/nope/search", json={"vector": q}), 404, "name")
    assert_error(w.get("/v1/nothing-here"), 404, None)
    assert_error(w.put(base), 405, None)
    info = w.get(base).json()
    assert info["count"] == 50 and info["last_seq"] == seq  # refused writes never reached the log


def test_ivf_collection_must_be_trained_first(w):
    x = vecs(300, seed=3)
    assert w.post("/v1/collections", json={"name": "ivf", "dim": DIM, "index": "IVF8,SQ8,rescore"}).status_code == 201
    assert_error(w.post("/v1/collections/ivf/points", json={"ids": [1], "vectors": [x[0].tolist()]}), 409, "collection")
    assert_error(w.post("/v1/collections/ivf/search", json={"vector": x[0].tolist()}), 409, "collection")
    assert_error(w.post("/v1/collections/ivf/train", json={"vectors": x[:4].tolist()}), 400, "vectors")
    assert w.post("/v1/collections/ivf/train", json={"vectors": x.tolist()}).status_code == 200
    assert w.get("/v1/collections/ivf").json()["trained"] is True
    assert_error(w.post("/v1/collections/ivf/train", json={"vectors": x.tolist()}), 409, "vectors")
    r = w.post("/v1/collections/ivf/points", json={"ids": list(range(60)), "vectors": x[:60].tolist()})
    assert r.status_code == 200
    hit = w.post("/v1/collections/ivf/search", json={"vector": x[5].tolist(), "k": 1,
                                                     "params": {"nprobe": 8, "rescore": 8}}).json()["hits"][0]
    assert hit["id"] == 5
    w.delete("/v1/collections/ivf")


def test_metrics_are_prometheus_text(srv, w, coll):
    name, x = coll
    for _ in range(3):
        w.post(f"/v1/collections/{name}/search", json={"vector": x[0].tolist()})
    w.post(f"/v1/collections/{name}/search", json={"vector": x[0].tolist(), "k": 0})
    r = httpx.get(srv.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in prom_parser.text_string_to_metric_families(r.text)}
    route = "/v1/collections/{name}/search"
    counts = {(s.labels["route"], s.labels["status"]): s.value
              for s in families["mlvec_http_requests"].samples if s.name == "mlvec_http_requests_total"}
    assert counts[(route, "200")] >= 3 and counts[(route, "400")] >= 1
    assert not any(status == "500" for _, status in counts)
    buckets = [s for s in families["mlvec_http_request_duration_seconds"].samples
               if s.name.endswith("_count") and s.labels["route"] == route]
    assert buckets and buckets[0].value >= 4
    points = {s.labels["collection"]: s.value for s in families["mlvec_collection_points"].samples}
    assert points[name] == w.get(f"/v1/collections/{name}").json()["count"]
    assert {s.labels["pool"] for s in families["mlvec_queue_depth"].samples} == {"search", "encode"}
    assert "mlvec_collection_memory_bytes" in families and "mlvec_collection_wal_bytes" in families
