"""The two writes a log holds, and their bytes.

A record body is ``u32 header length``, a JSON header (``op``, ``ids`` count, ``payloads``,
and for upserts the kind's description of its vectors), the ids as little-endian int64, then
the kind's vector bytes. Nothing is ever unpickled.

Replaying is idempotent (an upsert replaces a point, a delete of an absent id does nothing), and
:func:`fold` reduces a run of records to the last word on each id, so a long log is applied as
one removal and one addition.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlvec.serve.kinds import CollectionKind

_LEN = struct.Struct("<I")


@dataclass
class Upsert:
    ids: np.ndarray  # int64 [n], distinct
    vectors: Any  # the kind's batch of n points
    payloads: list[Any] | None  # n JSON values (None: no payload) or None for none at all


@dataclass
class Delete:
    ids: np.ndarray  # int64 [n]


Write = Upsert | Delete


def encode(op: Write, kind: CollectionKind) -> bytes:
    ids = np.ascontiguousarray(op.ids, dtype="<i8")
    header: dict[str, Any] = {"op": "upsert" if isinstance(op, Upsert) else "delete", "n": len(ids)}
    tail = b""
    if isinstance(op, Upsert):
        meta, tail = kind.pack(op.vectors)
        header["vectors"] = meta
        header["payloads"] = op.payloads
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return b"".join((_LEN.pack(len(head)), head, ids.tobytes(), tail))


def decode(body: bytes, kind: CollectionKind) -> Write:
    view = memoryview(body)
    (hlen,) = _LEN.unpack_from(view, 0)
    header = json.loads(bytes(view[_LEN.size : _LEN.size + hlen]))
    start = _LEN.size + hlen
    n = int(header["n"])
    ids = np.frombuffer(view[start : start + 8 * n], dtype="<i8").astype(np.int64)
    if header["op"] == "delete":
        return Delete(ids)
    if header["op"] != "upsert":
        raise ValueError(f"unknown log record {header['op']!r}")
    return Upsert(ids, kind.unpack(header["vectors"], view[start + 8 * n :]), header["payloads"])


@dataclass
class Folded:
    """The net effect of a run of writes: ids to delete, and the points to (re)write."""

    deleted: np.ndarray
    upsert: Upsert | None


def fold(ops: list[Write], kind: CollectionKind) -> Folded:
    """The last write on each id wins; earlier ones are dropped without touching the index."""
    last: dict[int, tuple[int, int]] = {}  # id -> (op number, row in that op), row -1 = deleted
    for n, op in enumerate(ops):
        rows = range(len(op.ids)) if isinstance(op, Upsert) else [-1] * len(op.ids)
        for i, row in zip(op.ids.tolist(), rows, strict=True):
            last[i] = (n, row)
    deleted = np.array(sorted(i for i, (_, row) in last.items() if row < 0), dtype=np.int64)
    by_op: dict[int, list[tuple[int, int]]] = {}
    for i, (n, row) in last.items():
        if row >= 0:
            by_op.setdefault(n, []).append((i, row))
    if not by_op:
        return Folded(deleted, None)
    ids: list[int] = []
    batches = []
    payloads: list[Any] = []
    for n in sorted(by_op):
        op = ops[n]
        assert isinstance(op, Upsert)
        picks = by_op[n]
        rows = np.array([row for _, row in picks], dtype=np.int64)
        ids.extend(i for i, _ in picks)
        batches.append(kind.take(op.vectors, rows))
        payloads.extend(op.payloads[r] if op.payloads is not None else None for r in rows.tolist())
    return Folded(deleted, Upsert(np.array(ids, dtype=np.int64), kind.concat(batches), payloads))
