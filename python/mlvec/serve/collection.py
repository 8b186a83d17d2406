"""One collection on disk and in memory: its index, payloads, write-ahead log and snapshots.

Layout of ``<data>/collections/<name>/``::

    collection.json                 the fixed settings (CollectionSpec), written once
    snapshots/<seq, 20 digits>/     index.mlvec, payloads.jsonl, snapshot.json (written last)
    wal/<first seq>.wal             the log since the snapshot (see mlvec.serve.wal)

A write is checked whole, appended to the log and fsynced, then applied under the write side of
the collection's :class:`~mlvec.serve.rwlock.RWLock`, so a search sees it wholly or not at all.
A snapshot (the index's atomic ``save``, the payloads, then ``snapshot.json``) is built in a
temporary folder and renamed into place, so a crash leaves either the old or the new snapshot,
never half of one; the log segments it covers are deleted afterwards. Writes wait while a
snapshot is written, searches do not. Opening a collection loads the newest snapshot
(memory-mapped) and replays the log after it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlvec.serve import records
from mlvec.serve.errors import ApiError
from mlvec.serve.kinds import KINDS, CollectionKind, CollectionSpec, SearchParams
from mlvec.serve.records import Delete, Upsert
from mlvec.serve.rwlock import RWLock
from mlvec.serve.wal import WriteAheadLog, fsync_dir

SPEC_FILE = "collection.json"
SNAPSHOT_NAME = re.compile(r"^\d{20}$")
FORMAT = 1


def write_file_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (the caller renames its folder into place)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _discard(path: Path) -> None:
    """Delete a snapshot folder so that a crash midway leaves a dot-folder (ignored, removed at
    the next start), never a snapshot folder with some of its files gone."""
    doomed = path.with_name(f".tmp-old-{path.name}-{uuid.uuid4().hex}")
    os.rename(path, doomed)
    _remove_tree(doomed)


@dataclass
class SearchResult:
    """The hits of each query: ``scores``/``ids`` ``[nq, k]`` (padding ``-inf``/``-1``) and, when
    asked for, each hit's payload (``None`` where it has none)."""

    scores: np.ndarray
    ids: np.ndarray
    payloads: list[list[Any]] | None


class Collection:
    """A named set of points (id, vectors, optional JSON payload) with a durable write path."""

    def __init__(self, path: Path, spec: CollectionSpec, index: Any, payloads: dict[int, Any],
                 wal: WriteAheadLog, snapshot_seq: int, read_only: bool) -> None:
        self.path = path
        self.spec = spec
        self.kind: CollectionKind = KINDS[spec.kind]
        self.read_only = read_only
        self._index = index
        self._payloads = payloads
        self._present: set[int] = set(self.kind.stored_ids(index).tolist())
        self._wal = wal
        self.snapshot_seq = snapshot_seq
        self.pending_points = 0  # points written since the snapshot
        self.pending_since: float | None = None  # when the oldest of them was written
        self._write_mutex = threading.Lock()  # one writer at a time: log order is apply order
        self._snapshot_mutex = threading.Lock()
        self._rw = RWLock()
        self._closed = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def last_seq(self) -> int:
        return self._wal.last_seq

    # -- creating and opening ---------------------------------------------------------------
    @classmethod
    def create(cls, parent: Path, spec: CollectionSpec, index: Any = None,
               payloads: dict[int, Any] | None = None) -> Collection:
        """Make the collection's folder complete under a temporary name, then rename it. An
        existing ``index`` (and its points' ``payloads``) becomes the first snapshot."""
        kind = KINDS[spec.kind]
        if index is None:
            try:
                index = kind.new_index(spec)
            except (ValueError, TypeError) as e:
                raise ApiError(400, f"index: {e}", "index") from None
        spec = CollectionSpec(**{**spec.to_dict(), "index": kind.describe_index(index)["index"]})
        tmp = parent / f".tmp-{spec.name}-{uuid.uuid4().hex}"
        try:
            (tmp / "snapshots").mkdir(parents=True)
            (tmp / "wal").mkdir()
            write_file_durably(tmp / SPEC_FILE, json.dumps({"format": FORMAT, **spec.to_dict()}, indent=1).encode())
            if kind.is_trained(index):
                _write_snapshot(tmp / "snapshots", kind, index, payloads or {}, 0)
            fsync_dir(tmp)
            os.rename(tmp, parent / spec.name)
            fsync_dir(parent)
        finally:
            if tmp.exists():
                _remove_tree(tmp)
        return cls.open(parent / spec.name)

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False, mmap: bool = True) -> Collection:
        """Load the newest snapshot and replay the log after it."""
        meta = json.loads((path / SPEC_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path / SPEC_FILE}: unknown format {meta.get('format')!r}")
        spec = CollectionSpec(**{k: meta[k] for k in ("name", "kind", "dim", "index", "metric", "encoder")})
        if spec.kind not in KINDS:
            raise ValueError(f"{path}: collection kind {spec.kind!r} is not known to this version")
        kind = KINDS[spec.kind]
        snapshots = path / "snapshots"
        if not read_only:
            for leftover in snapshots.glob(".tmp-*"):
                _remove_tree(leftover)  # a snapshot interrupted by a crash
        done = sorted(p for p in snapshots.iterdir() if SNAPSHOT_NAME.match(p.name) and (p / "snapshot.json").is_file())
        if done:
            latest = done[-1]
            seq = json.loads((latest / "snapshot.json").read_text())["seq"]
            index = kind.load_index(latest / "index.mlvec", mmap)
            payloads = _read_payloads(latest / "payloads.jsonl")
        else:
            seq, index, payloads = 0, kind.new_index(spec), {}
        wal = WriteAheadLog(path / "wal", read_only=read_only)
        ops = [records.decode(body, kind) for _, body in wal.replay(seq)]
        coll = cls(path, spec, index, payloads, wal, seq, read_only)
        if ops:
            folded = records.fold(ops, kind)
            coll._apply(folded.deleted, folded.upsert)
            coll.pending_points = sum(len(op.ids) for op in ops)
            coll.pending_since = time.monotonic()
        if not read_only:
            for old in done[:-1]:
                _discard(old)
            wal.drop_through(seq)
            wal.open_for_append()
        return coll

    # -- reading ----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        with self._rw.read():
            info = self.kind.describe_index(self._index)
        return {**self.spec.to_dict(), "index": info["index"], "count": info["count"], "trained": info["trained"],
                "memory_bytes": info["memory_bytes"], "last_seq": self.last_seq, "snapshot_seq": self.snapshot_seq,
                "wal_bytes": self._wal.size_bytes(), "read_only": self.read_only}

    def count(self) -> int:
        return len(self._present)

    def search(self, queries: Any, k: int, params: SearchParams, allow_ids: np.ndarray | None,
               with_payload: bool) -> SearchResult:
        """The ``k`` best points of each query, and their payloads, from one consistent state."""
        with self._rw.read():
            self._check_open()
            if not self.kind.is_trained(self._index):
                raise self._untrained()
            scores, ids = self.kind.search(self._index, queries, k, params, allow_ids)
            payloads = None
            if with_payload:
                get = self._payloads.get
                payloads = [[get(i) for i in row if i >= 0] for row in ids.tolist()]
        return SearchResult(scores, ids, payloads)

    def get(self, ids: np.ndarray) -> tuple[list[int], list[Any], list[int]]:
        """``(present ids, their payloads, missing ids)``."""
        with self._rw.read():
            self._check_open()
            found = [i for i in ids.tolist() if i in self._present]
            missing = [i for i in ids.tolist() if i not in self._present]
            return found, [self._payloads.get(i) for i in found], missing

    # -- writing ----------------------------------------------------------------------------
    def upsert(self, ids: np.ndarray, vectors: Any, payloads: list[Any] | None) -> int:
        """Write points (replacing those with the same ids); returns the log position."""
        op = Upsert(ids, vectors, payloads if payloads is not None and any(p is not None for p in payloads) else None)
        with self._write_mutex:
            self._check_writable()
            if not self.kind.is_trained(self._index):
                raise self._untrained()
            seq = self._log(records.encode(op, self.kind))
            with self._rw.write():
                self._apply(np.empty(0, np.int64), op)
            self._note_pending(len(ids))
        return seq

    def delete(self, ids: np.ndarray) -> tuple[int, int]:
        """Remove the points with these ids (absent ones are ignored): ``(log position, removed)``."""
        with self._write_mutex:
            self._check_writable()
            present = np.array([i for i in ids.tolist() if i in self._present], dtype=np.int64)
            if len(present) == 0:
                return self.last_seq, 0
            seq = self._log(records.encode(Delete(present), self.kind))
            with self._rw.write():
                self._apply(present, None)
            self._note_pending(len(present))
        return seq, len(present)

    def train(self, vectors: Any) -> int:
        """Train an empty collection's quantizers, and snapshot at once (training is not logged)."""
        with self._snapshot_mutex, self._write_mutex:
            self._check_writable()
            info = self.kind.describe_index(self._index)
            if info["trained"]:
                raise ApiError(409, f"vectors: collection '{self.name}' ({info['index']}) is already trained", "vectors")
            with self._rw.write():
                try:
                    self.kind.train(self._index, vectors)
                except ValueError as e:
                    raise ApiError(400, f"vectors: {e}", "vectors") from None
            return self._snapshot_locked(always=True)

    def _apply(self, deleted: np.ndarray, upsert: Upsert | None) -> None:
        """Apply checked writes (under the write lock, or while loading)."""
        present = self._present
        gone = [i for i in deleted.tolist() if i in present]
        new_ids = [] if upsert is None else upsert.ids.tolist()
        replaced = [i for i in new_ids if i in present]
        if gone or replaced:
            self.kind.remove(self._index, np.array(gone + replaced, dtype=np.int64))
        for i in gone:
            present.discard(i)
            self._payloads.pop(i, None)
        if upsert is not None:
            self.kind.add(self._index, upsert.ids, upsert.vectors)
            present.update(new_ids)
            payloads = upsert.payloads or [None] * len(new_ids)
            for i, p in zip(new_ids, payloads, strict=True):
                if p is None:
                    self._payloads.pop(i, None)
                else:
                    self._payloads[i] = p

    def _log(self, body: bytes) -> int:
        try:
            return self._wal.append(body)
        except OSError as e:
            raise ApiError(503, f"the write could not be logged ({e}); nothing was changed") from None

    def _note_pending(self, points: int) -> None:
        if self.pending_since is None:
            self.pending_since = time.monotonic()
        self.pending_points += points

    def _untrained(self) -> ApiError:
        return ApiError(409, f"collection '{self.name}' ({self.spec.index}) must be trained first: "
                             f"POST /v1/collections/{self.name}/train with sample vectors", "collection")

    def _check_open(self) -> None:
        if self._closed:
            raise ApiError(404, f"collection '{self.name}' was dropped", "name")

    def _check_writable(self) -> None:
        self._check_open()
        if self.read_only:
            raise ApiError(405, "this server is read-only (started with --read-only)")

    # -- snapshots --------------------------------------------------------------------------
    def snapshot(self) -> int:
        """Write a snapshot at the current log position if the log holds anything newer."""
        with self._snapshot_mutex, self._write_mutex:
            self._check_writable()
            return self._snapshot_locked(always=False)

    def _snapshot_locked(self, *, always: bool) -> int:
        seq = self._wal.last_seq
        if seq == self.snapshot_seq and not always:
            return seq
        self._wal.rotate()
        snapshots = self.path / "snapshots"
        with self._rw.read():
            _write_snapshot(snapshots, self.kind, self._index, self._payloads, seq)
        self.snapshot_seq = seq
        self.pending_points = 0
        self.pending_since = None
        for old in snapshots.iterdir():
            if SNAPSHOT_NAME.match(old.name) and int(old.name) < seq:
                _discard(old)
        self._wal.drop_through(seq)
        return seq

    def close(self, *, snapshot: bool = True) -> None:
        """Snapshot what the log holds beyond the last snapshot (so the next start is quick)."""
        with self._snapshot_mutex, self._write_mutex:
            if self._closed:
                return
            if snapshot and not self.read_only and self._wal.last_seq != self.snapshot_seq:
                self._snapshot_locked(always=False)
            self._closed = True
            self._wal.close()

    def mark_dropped(self) -> None:
        """Refuse everything from now on (the folder is being deleted)."""
        with self._snapshot_mutex, self._write_mutex, self._rw.write():
            self._closed = True
            self._wal.close()


def _write_snapshot(snapshots: Path, kind: CollectionKind, index: Any, payloads: dict[int, Any], seq: int) -> None:
    """Write ``snapshots/<seq>/`` whole, or not at all."""
    tmp = snapshots / f".tmp-{seq:020d}-{uuid.uuid4().hex}"
    final = snapshots / f"{seq:020d}"
    tmp.mkdir()
    try:
        kind.save_index(index, tmp / "index.mlvec")
        lines = [json.dumps([i, p], separators=(",", ":"), ensure_ascii=False) for i, p in payloads.items()]
        write_file_durably(tmp / "payloads.jsonl", ("\n".join(lines) + "\n" if lines else "").encode("utf-8"))
        write_file_durably(tmp / "snapshot.json", json.dumps({"seq": seq, "points": kind.describe_index(index)["count"]}).encode())
        fsync_dir(tmp)
        if final.exists():  # re-snapshotting at the same position (after training)
            _discard(final)
        os.rename(tmp, final)
        fsync_dir(snapshots)
    finally:
        if tmp.exists():
            _remove_tree(tmp)


def _read_payloads(path: Path) -> dict[int, Any]:
    payloads: dict[int, Any] = {}
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    i, p = json.loads(line)
                    payloads[int(i)] = p
    return payloads
