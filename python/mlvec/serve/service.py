"""The service behind the routes: checks each request against the limits, encodes texts, and
runs searches and writes off the event loop.

Searches go through a :class:`~mlvec.serve.batching.MicroBatcher` (native calls release the
GIL, so its threads search in parallel); texts through a one-thread batcher for the encoder;
writes and bookkeeping through a small pool, since a write waits for an fsync.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlvec.serve import schemas
from mlvec.serve.batching import MicroBatcher
from mlvec.serve.catalog import Catalog
from mlvec.serve.collection import Collection, SearchResult
from mlvec.serve.config import EncoderSpec, ServeConfig
from mlvec.serve.errors import ApiError, bad_field
from mlvec.serve.kinds import CollectionKind, CollectionSpec, SearchParams, kind_named
from mlvec.serve.metrics import Metrics

log = logging.getLogger("mlvec.serve")

ENCODE_BATCH = 64  # texts per encoder call


@dataclass
class _Search:
    coll: Collection
    queries: Any
    k: int
    params: SearchParams
    allow_ids: np.ndarray | None
    with_payload: bool


@dataclass
class _Encode:
    kind: CollectionKind
    encoder: Any
    texts: list[str]
    is_query: bool


def _run_searches(tasks: Sequence[_Search]) -> list[SearchResult]:
    """One native search for a group of compatible searches, split back per request."""
    first = tasks[0]
    if len(tasks) == 1:
        return [first.coll.search(first.queries, first.k, first.params, first.allow_ids, first.with_payload)]
    kind = first.coll.kind
    res = first.coll.search(kind.concat([t.queries for t in tasks]), first.k, first.params, None, first.with_payload)
    out, lo = [], 0
    for t in tasks:
        hi = lo + kind.count(t.queries)
        out.append(SearchResult(res.scores[lo:hi], res.ids[lo:hi], None if res.payloads is None else res.payloads[lo:hi]))
        lo = hi
    return out


def _run_encodes(tasks: Sequence[_Encode]) -> list[Any]:
    first = tasks[0]
    texts = [t for task in tasks for t in task.texts]
    vectors = first.kind.vectors_from_encoder(first.encoder, texts, first.is_query)
    out, lo = [], 0
    for task in tasks:
        hi = lo + len(task.texts)
        out.append(first.kind.take(vectors, np.arange(lo, hi)))
        lo = hi
    return out


def load_encoder(spec: EncoderSpec):
    """An encoder from ``e5`` or a local model folder (never a download)."""
    from mlvec.encoders import load_encoder as load

    spec.check()
    return load(spec.source)


def hits_json(result: SearchResult) -> list[dict[str, Any]]:
    """``[{"hits": [{"id", "score", "payload"}...]}...]``, padding dropped."""
    out = []
    payloads = result.payloads
    for q, (ids, scores) in enumerate(zip(result.ids.tolist(), result.scores.tolist(), strict=True)):
        hits = []
        n = 0
        for i, s in zip(ids, scores, strict=True):
            if i < 0:
                continue
            hit = {"id": i, "score": s}
            if payloads is not None:
                hit["payload"] = payloads[q][n]
            hits.append(hit)
            n += 1
        out.append({"hits": hits})
    return out


class Service:
    """Everything one server process holds."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.limits = config.limits
        self.catalog = Catalog(config.data_dir, read_only=config.read_only, snapshot_points=config.snapshot_points,
                               snapshot_seconds=config.snapshot_seconds)
        self.encoders: dict[str, Any] = {}
        self.searches = MicroBatcher("mlvec-search", _run_searches, threads=config.search_threads,
                                     micro_batch=config.micro_batch, max_batch=self.limits.max_batch,
                                     max_queue=self.limits.max_queue)
        self.encoding = MicroBatcher("mlvec-encode", _run_encodes, threads=1, micro_batch=True,
                                     max_batch=ENCODE_BATCH, max_queue=self.limits.max_queue)
        self.admin = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mlvec-admin")
        self.metrics = Metrics(self)
        self._loader: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Take the data folder now; load encoders and collections in the background."""
        self.catalog.lock()
        self._loader = threading.Thread(target=self._load, name="mlvec-load", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        try:
            for spec in self.config.encoders:
                self.encoders[spec.name] = load_encoder(spec)
                log.info("encoder %s loaded from %s (%d-d)", spec.name, spec.source, self.encoders[spec.name].dim)
            self.catalog.load()
            self.catalog.start_snapshots()
        except BaseException as e:
            self.catalog.load_error = e
            log.exception("the service could not load")

    def close(self) -> None:
        if self._loader is not None:
            self._loader.join()
        self.searches.close()
        self.encoding.close()
        self.admin.shutdown(wait=True)
        self.catalog.close()

    @property
    def ready(self) -> bool:
        return self.catalog.ready.is_set()

    def pools(self) -> dict[str, MicroBatcher]:
        return {"search": self.searches, "encode": self.encoding}

    async def _admin(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.admin, fn, *args)

    # -- collections ------------------------------------------------------------------------
    async def create(self, req: schemas.CreateCollection) -> dict[str, Any]:
        kind = kind_named(req.kind)
        encoder = self._encoder(req.encoder, "encoder") if req.encoder is not None else None
        dim = req.dim
        if dim is None:
            if encoder is None:
                raise bad_field("dim", "give the vector dimension (or an encoder to take it from)")
            dim = encoder.dim
        if not 1 <= dim <= self.limits.max_dim:
            raise bad_field("dim", f"must be in [1, {self.limits.max_dim}], got {dim}")
        if encoder is not None and encoder.dim != dim:
            raise bad_field("dim", f"encoder '{req.encoder}' gives {encoder.dim}-d vectors, not {dim}-d")
        if len(req.index) > 200:
            raise bad_field("index", f"at most 200 characters, got {len(req.index)}")
        spec = CollectionSpec(req.name, kind.name, dim, req.index, req.metric, req.encoder)
        coll = await self._admin(self.catalog.create, spec)
        return await self._admin(coll.describe)

    async def describe(self, name: str) -> dict[str, Any]:
        return await self._admin(self.catalog.get(name).describe)

    async def list(self) -> dict[str, Any]:
        return {"collections": await self._admin(lambda: [c.describe() for c in self.catalog.collections()])}

    async def drop(self, name: str) -> None:
        self.catalog.get(name)
        await self._admin(self.catalog.drop, name)

    async def snapshot(self, name: str) -> int:
        return await self._admin(self.catalog.get(name).snapshot)

    async def metrics_text(self) -> bytes:
        return await self._admin(self.metrics.render)

    # -- searching --------------------------------------------------------------------------
    async def search(self, name: str, reqs: list[schemas.SearchRequest], batch: bool) -> list[dict[str, Any]]:
        coll = self.catalog.get(name)
        if batch and not 1 <= len(reqs) <= self.limits.max_batch:
            raise bad_field("searches", f"give 1 to {self.limits.max_batch} searches, got {len(reqs)}")
        prefix = (lambda i: f"searches[{i}].") if batch else (lambda i: "")
        jobs: dict[Any, list[int]] = {}  # searches sharing a native call: key -> request numbers
        queries: list[Any] = [None] * len(reqs)
        texts: list[int] = []
        plans = []
        for i, req in enumerate(reqs):
            plans.append(self._plan_search(coll, req, prefix(i)))
            if req.text is not None:
                texts.append(i)
            else:
                queries[i] = coll.kind.vectors_from_json(coll.spec, [req.vector], prefix(i) + coll.kind.vector_field,
                                                         indexed=False)
        if texts:
            encoded = await self._encode(coll, [reqs[i].text for i in texts], is_query=True,
                                         field=prefix(texts[0]) + "text")
            for j, i in enumerate(texts):
                queries[i] = coll.kind.take(encoded, np.array([j]))
        for i, plan in enumerate(plans):
            jobs.setdefault(plan if plan[2] is None else ("alone", i), []).append(i)
        results: list[Any] = [None] * len(reqs)

        async def run(members: list[int]) -> None:
            k, params, allow, with_payload = plans[members[0]]
            q = coll.kind.concat([queries[i] for i in members])
            task = _Search(coll, q, k, params, allow, with_payload)
            key = None if allow is not None else (id(coll), k, params, with_payload)
            res = await self.searches.submit(key, len(members), task)
            for j, i in enumerate(members):
                results[i] = SearchResult(res.scores[j : j + 1], res.ids[j : j + 1],
                                          None if res.payloads is None else res.payloads[j : j + 1])

        if len(jobs) == 1:
            await run(next(iter(jobs.values())))
        else:
            await asyncio.gather(*(run(m) for m in jobs.values()))
        return [hits_json(r)[0] for r in results]

    def _plan_search(self, coll: Collection, req: schemas.SearchRequest, prefix: str):
        given = [f for f in ("vector", "text", "tokens") if getattr(req, f) is not None]
        if len(given) != 1:
            raise ApiError(400, f"{prefix}vector: give exactly one of 'vector', 'text' or 'tokens', got "
                                f"{', '.join(given) or 'none'}", prefix + "vector")
        if req.tokens is not None and coll.kind.vector_field != "tokens":
            raise bad_field(prefix + "tokens", f"collection '{coll.name}' is '{coll.spec.kind}' (one vector per "
                                               f"point): give 'vector'; token matrices are for multi-vector collections")
        if req.vector is not None and coll.kind.vector_field != "vector":
            raise bad_field(prefix + "vector", f"collection '{coll.name}' takes 'tokens'")
        if req.text is not None:
            self._check_texts([req.text], prefix + "text")
        if not 1 <= req.k <= self.limits.max_k:
            raise bad_field(prefix + "k", f"must be in [1, {self.limits.max_k}], got {req.k}")
        params = SearchParams()
        if req.params is not None:
            lim = self.limits
            for f, top in (("nprobe", lim.max_nprobe), ("ef_search", lim.max_ef_search), ("rescore", lim.max_rescore)):
                v = getattr(req.params, f)
                low = 0 if f == "rescore" else 1
                if v is not None and not low <= v <= top:
                    raise bad_field(f"{prefix}params.{f}", f"must be in [{low}, {top}], got {v}")
            params = SearchParams(req.params.nprobe, req.params.ef_search, req.params.rescore)
            try:
                coll.kind.check_params(coll.spec, params)
            except ApiError as e:
                raise bad_field(prefix + e.field, e.message.split(": ", 1)[1]) from None
        allow = None
        if req.filter is not None and req.filter.ids is not None:
            if len(req.filter.ids) > self.limits.max_ids:
                raise bad_field(prefix + "filter.ids", f"at most {self.limits.max_ids} ids, got {len(req.filter.ids)}")
            allow = np.array(req.filter.ids, dtype=np.int64)
        return req.k, params, allow, req.with_payload

    # -- writing ----------------------------------------------------------------------------
    async def upsert(self, name: str, req: schemas.UpsertRequest) -> dict[str, Any]:
        coll = self.catalog.get(name)
        self._check_write(coll)
        n = len(req.ids)
        ids = self._check_ids(req.ids, "ids", self.limits.max_batch, distinct=True)
        given = [f for f in ("vectors", "texts", "tokens") if getattr(req, f) is not None]
        if len(given) != 1:
            raise bad_field("vectors", f"give exactly one of 'vectors', 'texts' or 'tokens', got {', '.join(given) or 'none'}")
        field = given[0]
        rows = getattr(req, field)
        if len(rows) != n:
            raise bad_field(field, f"{n} ids but {len(rows)} {field}")
        if req.payloads is not None:
            if len(req.payloads) != n:
                raise bad_field("payloads", f"{n} ids but {len(req.payloads)} payloads")
            for i, p in enumerate(req.payloads):
                size = len(json.dumps(p, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
                if size > self.limits.max_payload_bytes:
                    raise bad_field(f"payloads[{i}]", f"{size} bytes of JSON, more than {self.limits.max_payload_bytes}")
        if field == "tokens":
            raise bad_field("tokens", f"collection '{coll.name}' is '{coll.spec.kind}' (one vector per point): give "
                                      "'vectors'; token matrices are for multi-vector collections")
        if field == "texts":
            vectors = await self._encode(coll, rows, is_query=False, field="texts")
        else:  # off the event loop: converting a large batch takes milliseconds
            vectors = await self._admin(coll.kind.vectors_from_json, coll.spec, rows, "vectors")
        seq = await self._admin(coll.upsert, ids, vectors, req.payloads)
        return {"seq": seq, "upserted": n}

    async def delete(self, name: str, req: schemas.IdsRequest) -> dict[str, Any]:
        coll = self.catalog.get(name)
        self._check_write(coll)
        ids = self._check_ids(req.ids, "ids", self.limits.max_ids, distinct=False)
        seq, deleted = await self._admin(coll.delete, np.unique(ids))
        return {"seq": seq, "deleted": deleted}

    async def get_points(self, name: str, req: schemas.IdsRequest) -> dict[str, Any]:
        coll = self.catalog.get(name)
        ids = self._check_ids(req.ids, "ids", self.limits.max_ids, distinct=False)
        found, payloads, missing = await self._admin(coll.get, ids)
        return {"points": [{"id": i, "payload": p} for i, p in zip(found, payloads, strict=True)], "missing": missing}

    async def train(self, name: str, req: schemas.TrainRequest) -> int:
        coll = self.catalog.get(name)
        self._check_write(coll)
        if (req.vectors is None) == (req.texts is None):
            raise bad_field("vectors", "give exactly one of 'vectors' or 'texts'")
        rows = req.vectors if req.vectors is not None else req.texts
        if not rows:
            raise bad_field("vectors" if req.texts is None else "texts", "no training data")
        if req.texts is not None:
            vectors = await self._encode(coll, req.texts, is_query=False, field="texts")
        else:
            vectors = await self._admin(coll.kind.vectors_from_json, coll.spec, req.vectors, "vectors")
        return await self._admin(coll.train, vectors)

    # -- helpers ----------------------------------------------------------------------------
    def _check_write(self, coll: Collection) -> None:
        if coll.read_only:
            raise ApiError(405, "this server is read-only (started with --read-only)")

    def _check_ids(self, ids: list[int], field: str, most: int, *, distinct: bool) -> np.ndarray:
        if not ids:
            raise bad_field(field, "no ids given")
        if len(ids) > most:
            raise bad_field(field, f"at most {most} per request, got {len(ids)}")
        a = np.array(ids, dtype=np.int64)
        if distinct and len(np.unique(a)) != len(a):
            seen: set[int] = set()
            dup = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise bad_field(field, f"id {dup} appears more than once")
        return a

    def _check_texts(self, texts: list[str], field: str) -> None:
        top = self.limits.max_text_chars
        for i, t in enumerate(texts):
            where = field if len(texts) == 1 and not field.endswith("s") else f"{field}[{i}]"
            if not t.strip():
                raise bad_field(where, "is empty")
            if len(t) > top:
                raise bad_field(where, f"{len(t)} characters, more than {top}")

    def _encoder(self, name: str, field: str):
        if name not in self.encoders:
            known = ", ".join(sorted(self.encoders)) or "none (start the server with --encoder)"
            raise bad_field(field, f"no encoder named '{name}' in this server; encoders: {known}")
        return self.encoders[name]

    async def _encode(self, coll: Collection, texts: list[str], *, is_query: bool, field: str) -> Any:
        if coll.spec.encoder is None:
            raise ApiError(409, f"{field}: collection '{coll.name}' has no encoder; give vectors (or create the "
                                "collection with an encoder)", field)
        if coll.spec.encoder not in self.encoders:
            raise ApiError(409, f"{field}: collection '{coll.name}' encodes with '{coll.spec.encoder}', which this "
                                f"server has not loaded (start it with --encoder {coll.spec.encoder}=...)", field)
        if field.endswith("s"):
            if len(texts) > self.limits.max_batch:
                raise bad_field(field, f"at most {self.limits.max_batch} per request, got {len(texts)}")
            self._check_texts(texts, field)
        task = _Encode(coll.kind, self.encoders[coll.spec.encoder], list(texts), is_query)
        return await self.encoding.submit((coll.spec.encoder, coll.kind.name, is_query), len(texts), task)
