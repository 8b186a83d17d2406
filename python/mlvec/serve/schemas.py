"""Request and response bodies of the ``/v1`` API (pydantic models; they make the OpenAPI schema).

Unknown fields are refused (a typo such as ``"nprob"`` is an error, not silently ignored). The
``tokens`` fields are reserved for multi-vector collections (one token matrix per point).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

Id = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1, description="a point id: an integer in [0, 2^63)")]
Int = Annotated[int, Strict()]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchParams(_Body):
    nprobe: Int | None = Field(None, description="inverted lists visited (IVF indexes)")
    ef_search: Int | None = Field(None, description="candidate list size (HNSW indexes)")
    rescore: Int | None = Field(None, description="re-rank k x rescore candidates exactly (',rescore' indexes)")


class Filter(_Body):
    ids: list[Id] | None = Field(None, description="only these ids may be returned")


class SearchRequest(_Body):
    """One query: exactly one of ``vector``, ``text`` (encoded with the collection's encoder, query
    prefix applied) or ``tokens`` (multi-vector collections)."""

    vector: list[float] | None = Field(None, description="float [dim]")
    text: str | None = Field(None, description="query text")
    tokens: list[list[float]] | None = Field(None, description="float [tokens, dim]; multi-vector collections")
    k: Int = Field(10, description="results wanted (>= 1)")
    filter: Filter | None = None
    params: SearchParams | None = None
    with_payload: bool = Field(True, description="return each hit's payload")


class BatchSearchRequest(_Body):
    searches: list[SearchRequest] = Field(description="queries, answered in order")


class Hit(BaseModel):
    id: int
    score: float = Field(description="higher is better: inner product, cosine or -squared L2")
    payload: Any = None


class SearchResponse(BaseModel):
    hits: list[Hit]


class BatchSearchResponse(BaseModel):
    results: list[SearchResponse]


class UpsertRequest(_Body):
    """Points to write; a point whose id exists is replaced (vectors and payload) in one step."""

    ids: list[Id]
    vectors: list[list[float]] | None = Field(None, description="float [n, dim]")
    texts: list[str] | None = Field(None, description="n texts, encoded as passages by the collection's encoder")
    tokens: list[list[list[float]]] | None = Field(None, description="n token matrices; multi-vector collections")
    payloads: list[Any] | None = Field(None, description="n JSON values (null: none), returned with hits")


class IdsRequest(_Body):
    ids: list[Id]


class UpsertResponse(BaseModel):
    seq: int = Field(description="log position of the write (durable when this answer is sent)")
    upserted: int


class DeleteResponse(BaseModel):
    seq: int
    deleted: int = Field(description="points removed (ids not present are ignored)")


class Point(BaseModel):
    id: int
    payload: Any = None


class PointsResponse(BaseModel):
    points: list[Point]
    missing: list[int]


class TrainRequest(_Body):
    vectors: list[list[float]] | None = Field(None, description="sample vectors, float [n, dim]")
    texts: list[str] | None = Field(None, description="sample texts (encoded as passages)")


class CreateCollection(_Body):
    name: str = Field(description="1-64 letters, digits, '_' or '-'")
    kind: str = Field("single", description="'single' (one vector per point)")
    dim: Int | None = Field(None, description="vector dimension (default: the encoder's)")
    index: str = Field("Flat", description="mlvec.index description, e.g. 'HNSW32', 'IVF256,SQ8,rescore'")
    metric: Literal["ip", "cosine", "l2"] = "ip"
    encoder: str | None = Field(None, description="a server encoder, for text upserts and queries")


class CollectionInfo(BaseModel):
    name: str
    kind: str
    dim: int
    index: str
    metric: str
    encoder: str | None
    count: int
    trained: bool
    memory_bytes: int
    last_seq: int
    snapshot_seq: int
    wal_bytes: int
    read_only: bool


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class SnapshotResponse(BaseModel):
    seq: int


class ErrorDetail(BaseModel):
    status: int
    field: str | None
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
