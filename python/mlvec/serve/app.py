"""The ASGI application: routes of the ``/v1`` API, health, metrics, errors, keys and limits.

``create_app(config)`` builds it; ``app_from_environment()`` rebuilds it from
``$MLVEC_SERVE_CONFIG`` in worker processes started by the ASGI server.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

import mlvec
from mlvec.serve import schemas
from mlvec.serve.config import Scope, ServeConfig
from mlvec.serve.errors import ApiError, error_body
from mlvec.serve.metrics import CONTENT_TYPE, MetricsMiddleware
from mlvec.serve.service import Service

log = logging.getLogger("mlvec.serve")

CONFIG_ENV = "MLVEC_SERVE_CONFIG"
LARGE_BODY = 64 * 1024

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse, "description": text}
    for code, text in ((400, "a field is invalid or past a limit"), (401, "no key or an unknown key"),
                       (403, "a read key on a write"), (404, "no such collection"),
                       (409, "conflict: exists, untrained, no encoder"), (413, "body too large"),
                       (422, "malformed body"), (503, "loading, or overloaded"))
}


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, field), status_code=status, headers=headers)


def _field_of(loc: tuple) -> str:
    """``("body", "vectors", 3, 1)`` -> ``"vectors[3][1]"``."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413: by Content-Length, or, for a chunked body,
    while reading it (it is read whole first, at most ``limit`` bytes, then handed on)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if length.isdigit() and int(length) > self.limit:
                return await self._refuse(scope, receive, send)
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return await self.app(scope, receive, send)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.limit:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = _error(413, f"body: larger than the limit of {self.limit} bytes", "body",
                          headers={"Connection": "close"})
        await response(scope, receive, send)


def create_app(config: ServeConfig, service: Service | None = None) -> FastAPI:
    """The FastAPI app over ``config.data_dir``. Collections load in the background once it starts
    (``/readyz`` answers 503 until they have)."""
    svc = service or Service(config)
    keys = config.keys

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc.start()
        app.state.service = svc
        try:
            yield
        finally:
            svc.close()

    app = FastAPI(title="mlvec serve", version=mlvec.__version__, lifespan=lifespan,
                  description="Vector search over mlvec indexes: collections, durable upserts and deletes, "
                              "search by vector or text.")
    app.state.service = svc

    # -- access and bodies ------------------------------------------------------------------
    # Plain calls, not FastAPI dependencies: dependency resolution and json.loads cost more than
    # the search itself (measured: ~0.2 ms and ~0.1 ms of a ~0.7 ms request); pydantic's own JSON
    # parser validates the body in one pass. The OpenAPI schema declares both (see _openapi).
    def authorize(request: Request, scope: Scope) -> None:
        if svc.catalog.load_error is not None:
            raise ApiError(503, f"the service failed to load: {svc.catalog.load_error}")
        if not svc.ready:
            raise ApiError(503, "not ready: the collections are loading", headers={"Retry-After": "1"})
        if not keys.enabled:
            return
        headers = request.headers
        presented = headers.get("api-key")
        if presented is None:
            auth = headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                presented = auth[7:].strip()
        if presented is None:
            raise ApiError(401, "an API key is required (header 'api-key: KEY' or 'Authorization: Bearer KEY')",
                           headers={"WWW-Authenticate": "Bearer"})
        granted = keys.scope_of(presented)
        if granted is None:
            raise ApiError(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if scope == "write" and granted != "write":
            raise ApiError(403, "this key may only read; writes need a write key")

    async def parse(request: Request, model: type[BaseModel]) -> Any:
        body = await request.body()
        try:
            if len(body) <= LARGE_BODY:
                return model.model_validate_json(body)
            # A large upsert takes tens of ms to validate; in a thread, the event loop keeps
            # answering searches meanwhile (the GIL is handed over every few ms).
            return await asyncio.get_running_loop().run_in_executor(svc.admin, model.model_validate_json, body)
        except ValidationError as e:
            raise RequestValidationError([{**err, "loc": ("body", *err["loc"])} for err in e.errors()]) from None

    def doc(scope: Scope, model: type[BaseModel] | None = None) -> dict[str, Any]:
        extra: dict[str, Any] = {"security": [{"ApiKey": []}, {"Bearer": []}]}
        if model is not None:
            extra["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        return extra

    # -- errors ----------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        errors = e.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = "body" if first.get("type") == "json_invalid" else _field_of(tuple(first.get("loc", ())))
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        return _error(422, f"{field}: {first.get('msg', 'invalid')}{more}", field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        message = {404: f"no route {request.method} {request.url.path}", 405: f"method {request.method} not allowed "
                   f"on {request.url.path}"}.get(e.status_code, str(e.detail))
        return _error(e.status_code, message, None, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal error (a bug: the server log has the details)")

    # -- health and metrics ----------------------------------------------------------------
    @app.get("/livez", tags=["health"], summary="the process is up")
    async def livez():
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="200 once the collections are loaded, 503 before",
             responses={503: _ERRORS[503]})
    async def readyz():
        if svc.catalog.load_error is not None:
            return _error(503, f"failed to load: {svc.catalog.load_error}")
        if not svc.ready:
            return _error(503, "loading collections", headers={"Retry-After": "1"})
        return {"status": "ready", "collections": len(svc.catalog.names())}

    @app.get("/metrics", tags=["health"], summary="Prometheus text format", response_class=Response)
    async def metrics():
        return Response(await svc.metrics_text(), media_type=CONTENT_TYPE)

    # -- collections -----------------------------------------------------------------------
    v1 = "/v1/collections"

    @app.get(v1, response_model=schemas.CollectionList, tags=["collections"], responses=_ERRORS,
             openapi_extra=doc("read"), summary="list collections")
    async def list_collections(request: Request):
        authorize(request, "read")
        return JSONResponse(await svc.list())

    @app.post(v1, response_model=schemas.CollectionInfo, status_code=201, tags=["collections"], responses=_ERRORS,
              openapi_extra=doc("write", schemas.CreateCollection), summary="create a collection")
    async def create_collection(request: Request):
        authorize(request, "write")
        return JSONResponse(await svc.create(await parse(request, schemas.CreateCollection)), status_code=201)

    @app.get(v1 + "/{name}", response_model=schemas.CollectionInfo, tags=["collections"], responses=_ERRORS,
             openapi_extra=doc("read"), summary="describe a collection")
    async def describe_collection(name: str, request: Request):
        authorize(request, "read")
        return JSONResponse(await svc.describe(name))

    @app.delete(v1 + "/{name}", tags=["collections"], responses=_ERRORS, openapi_extra=doc("write"),
                summary="drop a collection and its files")
    async def drop_collection(name: str, request: Request):
        authorize(request, "write")
        await svc.drop(name)
        return {"dropped": name}

    @app.post(v1 + "/{name}/train", response_model=schemas.SnapshotResponse, tags=["collections"],
              responses=_ERRORS, openapi_extra=doc("write", schemas.TrainRequest),
              summary="train an empty collection's quantizers")
    async def train(name: str, request: Request):
        authorize(request, "write")
        return {"seq": await svc.train(name, await parse(request, schemas.TrainRequest))}

    @app.post(v1 + "/{name}/snapshot", response_model=schemas.SnapshotResponse, tags=["collections"],
              responses=_ERRORS, openapi_extra=doc("write"), summary="snapshot now (and truncate the log)")
    async def snapshot(name: str, request: Request):
        authorize(request, "write")
        return {"seq": await svc.snapshot(name)}

    # -- points ----------------------------------------------------------------------------
    @app.post(v1 + "/{name}/points", response_model=schemas.UpsertResponse, tags=["points"], responses=_ERRORS,
              openapi_extra=doc("write", schemas.UpsertRequest), summary="upsert points (durable when answered)")
    async def upsert(name: str, request: Request):
        authorize(request, "write")
        return JSONResponse(await svc.upsert(name, await parse(request, schemas.UpsertRequest)))

    @app.post(v1 + "/{name}/points/delete", response_model=schemas.DeleteResponse, tags=["points"],
              responses=_ERRORS, openapi_extra=doc("write", schemas.IdsRequest),
              summary="delete points by id (durable when answered)")
    async def delete(name: str, request: Request):
        authorize(request, "write")
        return JSONResponse(await svc.delete(name, await parse(request, schemas.IdsRequest)))

    @app.post(v1 + "/{name}/points/get", response_model=schemas.PointsResponse, tags=["points"],
              responses=_ERRORS, openapi_extra=doc("read", schemas.IdsRequest),
              summary="which ids are stored, with their payloads")
    async def get_points(name: str, request: Request):
        authorize(request, "read")
        return JSONResponse(await svc.get_points(name, await parse(request, schemas.IdsRequest)))

    # -- search ----------------------------------------------------------------------------
    @app.post(v1 + "/{name}/search", response_model=schemas.SearchResponse, tags=["search"], responses=_ERRORS,
              openapi_extra=doc("read", schemas.SearchRequest), summary="k nearest points of a vector or a text")
    async def search(name: str, request: Request):
        authorize(request, "read")
        body = await parse(request, schemas.SearchRequest)
        return JSONResponse((await svc.search(name, [body], batch=False))[0])

    @app.post(v1 + "/{name}/search/batch", response_model=schemas.BatchSearchResponse, tags=["search"],
              responses=_ERRORS, openapi_extra=doc("read", schemas.BatchSearchRequest),
              summary="several searches in one request")
    async def search_batch(name: str, request: Request):
        authorize(request, "read")
        body = await parse(request, schemas.BatchSearchRequest)
        return JSONResponse({"results": await svc.search(name, body.searches, batch=True)})

    app.openapi = lambda: _openapi(app)
    app.add_middleware(BodyLimit, limit=config.limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics_of=lambda: svc.metrics)
    return app


BODIES = (schemas.CreateCollection, schemas.TrainRequest, schemas.UpsertRequest, schemas.IdsRequest,
          schemas.SearchRequest, schemas.BatchSearchRequest)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request bodies and key schemes the routes read themselves."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {})
        named = components.setdefault("schemas", {})
        for model in BODIES:
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            named.update(js.pop("$defs", {}))
            named[model.__name__] = js
        components["securitySchemes"] = {"ApiKey": {"type": "apiKey", "in": "header", "name": "api-key"},
                                         "Bearer": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = schema
    return app.openapi_schema


def app_from_environment() -> FastAPI:
    """The app described by ``$MLVEC_SERVE_CONFIG`` (set by ``mlvec serve`` for its workers)."""
    text = os.environ.get(CONFIG_ENV)
    if not text:
        raise RuntimeError(f"${CONFIG_ENV} is not set: start the service with 'mlvec serve'")
    return create_app(ServeConfig.from_json(text))
