"""``/metrics`` in Prometheus text format: requests and latencies by route, collection sizes,
log positions and the search and encode queues.

Routes are labelled by their template (``/v1/collections/{name}/search``), never by the raw
path, so the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Search latencies sit between ~0.1 ms and a few hundred ms; writes wait for an fsync.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector:
    """Gauges read at scrape time from the live service."""

    def __init__(self, service) -> None:
        self._service = service

    def collect(self):
        svc = self._service
        points = GaugeMetricFamily("mlvec_collection_points", "Points stored in a collection", labels=["collection"])
        memory = GaugeMetricFamily("mlvec_collection_memory_bytes", "Bytes of a collection's index data",
                                   labels=["collection"])
        wal = GaugeMetricFamily("mlvec_collection_wal_bytes", "Bytes of a collection's write-ahead log",
                                labels=["collection"])
        seq = GaugeMetricFamily("mlvec_collection_last_seq", "Last log record written", labels=["collection"])
        snap = GaugeMetricFamily("mlvec_collection_snapshot_seq", "Log record of the newest snapshot",
                                 labels=["collection"])
        for coll in svc.catalog.collections():
            try:
                info = coll.describe()
            except Exception:
                continue  # dropped while scraping
            points.add_metric([coll.name], info["count"])
            memory.add_metric([coll.name], info["memory_bytes"])
            wal.add_metric([coll.name], info["wal_bytes"])
            seq.add_metric([coll.name], info["last_seq"])
            snap.add_metric([coll.name], info["snapshot_seq"])
        queue = GaugeMetricFamily("mlvec_queue_depth", "Jobs waiting or running in a thread pool", labels=["pool"])
        batches = GaugeMetricFamily("mlvec_pool_jobs_per_call", "Mean jobs combined into one native call",
                                    labels=["pool"])
        for name, pool in svc.pools().items():
            queue.add_metric([name], pool.depth)
            batches.add_metric([name], pool.jobs / pool.batches if pool.batches else 0.0)
        ready = GaugeMetricFamily("mlvec_ready", "1 once the collections and encoders are loaded")
        ready.add_metric([], 1.0 if svc.catalog.ready.is_set() else 0.0)
        yield from (points, memory, wal, seq, snap, queue, batches, ready)


class Metrics:
    def __init__(self, service) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mlvec_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("mlvec_http_request_duration_seconds", "HTTP request latency by route",
                                 ["route", "method"], buckets=_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(service))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: no per-request task or body copy)."""

    def __init__(self, app, metrics_of: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics_of = metrics_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            metrics = self.metrics_of()
            if metrics is not None:
                route = scope.get("route")
                label = getattr(route, "path", None) or "unmatched"
                method = scope.get("method", "")
                metrics.requests.labels(label, method, str(status)).inc()
                metrics.latency.labels(label, method).observe(time.perf_counter() - start)
