"""A small synchronous client for the service (``httpx``), used by ``mlvec client``.

    >>> from mlvec.serve import Client
    >>> with Client("http://127.0.0.1:8000", api_key=None) as c:
    ...     c.create_collection("verses", dim=384, index="HNSW32", encoder="e5")
    ...     c.upsert("verses", ids=[1, 2], texts=["In the beginning...", "And God said..."])
    ...     c.search("verses", text="creation of the world", k=5)["hits"]
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ServiceError(Exception):
    """An error answer: ``status``, the ``field`` at fault and the service's ``message``."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.field = field


def _rows(x: Any) -> list:
    return np.asarray(x, dtype=np.float32).tolist()


class Client:
    """Calls ``/v1`` of one server. ``api_key`` is sent as ``Authorization: Bearer``."""

    def __init__(self, url: str = "http://127.0.0.1:8000", api_key: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        r = self._http.request(method, path, json=body)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ServiceError(r.status_code, err["message"], err.get("field"))
            except (ValueError, KeyError, TypeError):
                raise ServiceError(r.status_code, r.text) from None
        return r.json()

    # -- collections ------------------------------------------------------------------------
    def create_collection(self, name: str, *, dim: int | None = None, index: str = "Flat", metric: str = "ip",
                          encoder: str | None = None, kind: str = "single") -> dict:
        body = {"name": name, "kind": kind, "dim": dim, "index": index, "metric": metric, "encoder": encoder}
        return self.request("POST", "/v1/collections", body)

    def collections(self) -> list[dict]:
        return self.request("GET", "/v1/collections")["collections"]

    def describe(self, name: str) -> dict:
        return self.request("GET", f"/v1/collections/{name}")

    def drop(self, name: str) -> dict:
        return self.request("DELETE", f"/v1/collections/{name}")

    def train(self, name: str, vectors: Any = None, texts: list[str] | None = None) -> dict:
        return self.request("POST", f"/v1/collections/{name}/train",
                            {"vectors": None if vectors is None else _rows(vectors), "texts": texts})

    def snapshot(self, name: str) -> dict:
        return self.request("POST", f"/v1/collections/{name}/snapshot")

    # -- points -----------------------------------------------------------------------------
    def upsert(self, name: str, ids: Any, vectors: Any = None, texts: list[str] | None = None,
               payloads: list[Any] | None = None) -> dict:
        body: dict[str, Any] = {"ids": [int(i) for i in ids]}
        if vectors is not None:
            body["vectors"] = _rows(vectors)
        if texts is not None:
            body["texts"] = list(texts)
        if payloads is not None:
            body["payloads"] = list(payloads)
        return self.request("POST", f"/v1/collections/{name}/points", body)

    def delete(self, name: str, ids: Any) -> dict:
        return self.request("POST", f"/v1/collections/{name}/points/delete", {"ids": [int(i) for i in ids]})

    def get(self, name: str, ids: Any) -> dict:
        return self.request("POST", f"/v1/collections/{name}/points/get", {"ids": [int(i) for i in ids]})

    # -- search -----------------------------------------------------------------------------
    @staticmethod
    def query(vector: Any = None, text: str | None = None, k: int = 10, filter_ids: Any = None,
              with_payload: bool = True, **params: int | None) -> dict:
        """One search body (``params``: ``nprobe``, ``ef_search``, ``rescore``)."""
        body: dict[str, Any] = {"k": k, "with_payload": with_payload}
        if vector is not None:
            body["vector"] = np.asarray(vector, dtype=np.float32).ravel().tolist()
        if text is not None:
            body["text"] = text
        if filter_ids is not None:
            body["filter"] = {"ids": [int(i) for i in filter_ids]}
        p = {k: v for k, v in params.items() if v is not None}
        if p:
            body["params"] = p
        return body

    def search(self, name: str, vector: Any = None, text: str | None = None, k: int = 10, **kw: Any) -> dict:
        return self.request("POST", f"/v1/collections/{name}/search", self.query(vector, text, k, **kw))

    def search_batch(self, name: str, searches: list[dict]) -> list[dict]:
        return self.request("POST", f"/v1/collections/{name}/search/batch", {"searches": searches})["results"]
