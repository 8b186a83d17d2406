"""The collections under a data folder: names, create / list / drop, loading, snapshots.

``<data>/LOCK`` is held (``flock``) for as long as a server uses the folder: exclusively by a
read-write server, shared by read-only ones, so two writers never share a log. Collection
names are letters, digits, ``_`` and ``-`` (at most 64, starting with a letter or digit), so a
name is never a path.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from mlvec.serve.collection import Collection
from mlvec.serve.errors import ApiError, bad_field
from mlvec.serve.kinds import CollectionSpec
from mlvec.serve.wal import fsync_dir

log = logging.getLogger("mlvec.serve")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_name(name: str, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise bad_field(field, f"collection names are 1-64 letters, digits, '_' or '-', starting with a letter "
                               f"or digit; got {name!r}")
    return name


class Catalog:
    """The collections of one data folder."""

    def __init__(self, data_dir: str | os.PathLike[str], *, read_only: bool = False,
                 snapshot_points: int = 100_000, snapshot_seconds: float = 300.0) -> None:
        self.root = Path(data_dir)
        self.dir = self.root / "collections"
        self.read_only = read_only
        self.snapshot_points = snapshot_points
        self.snapshot_seconds = snapshot_seconds
        self._collections: dict[str, Collection] = {}
        self._mutex = threading.Lock()  # create / drop / load
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self._stop = threading.Event()
        self._lock_file = None
        self._snapshotter: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the data folder (exclusively unless read-only); refuse if another server has it."""
        if self.read_only:
            if not self.dir.is_dir():
                raise ValueError(f"--data {self.root}: no collections folder to serve read-only")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
        lock = self.root / "LOCK"
        f = open(lock, "rb") if self.read_only and lock.exists() else open(lock, "a+b")
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if self.read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ValueError(f"--data {self.root}: another mlvec serve is using this folder"
                             + ("" if self.read_only else " (read-write servers need it to themselves)")) from None
        self._lock_file = f

    def load(self) -> None:
        """Open every collection (snapshot + log replay); sets :attr:`ready` when done."""
        try:
            with self._mutex:
                for entry in sorted(self.dir.iterdir()):
                    if entry.name.startswith("."):
                        if not self.read_only:
                            shutil.rmtree(entry, ignore_errors=True)  # an interrupted create or drop
                        continue
                    if not entry.is_dir() or not NAME.match(entry.name):
                        continue
                    t0 = time.perf_counter()
                    coll = Collection.open(entry, read_only=self.read_only)
                    self._collections[entry.name] = coll
                    log.info("loaded collection %s: %d points, log at %d (snapshot %d) in %.2f s", entry.name,
                             coll.count(), coll.last_seq, coll.snapshot_seq, time.perf_counter() - t0)
        except BaseException as e:
            self.load_error = e
            log.exception("loading the collections failed")
            raise
        self.ready.set()

    def start_snapshots(self) -> None:
        if self.read_only:
            return
        self._snapshotter = threading.Thread(target=self._snapshot_loop, name="mlvec-snapshots", daemon=True)
        self._snapshotter.start()

    def _snapshot_loop(self) -> None:
        while not self._stop.wait(0.5):
            for coll in list(self._collections.values()):
                since = coll.pending_since
                due = coll.pending_points >= self.snapshot_points or (
                    since is not None and time.monotonic() - since >= self.snapshot_seconds)
                if due:
                    try:
                        t0 = time.perf_counter()
                        seq = coll.snapshot()
                        log.info("snapshot of %s at %d in %.2f s", coll.name, seq, time.perf_counter() - t0)
                    except ApiError:
                        pass  # dropped meanwhile
                    except Exception:
                        log.exception("snapshot of %s failed", coll.name)

    def close(self) -> None:
        """Stop the snapshot thread, snapshot what is pending, release the folder."""
        self._stop.set()
        if self._snapshotter is not None:
            self._snapshotter.join()
        with self._mutex:
            for coll in self._collections.values():
                try:
                    coll.close()
                except Exception:
                    log.exception("closing %s failed", coll.name)
            self._collections.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- collections ------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._collections)

    def collections(self) -> list[Collection]:
        return [self._collections[n] for n in self.names()]

    def get(self, name: str) -> Collection:
        coll = self._collections.get(name)
        if coll is None:
            check_name(name)
            raise ApiError(404, f"name: no collection named '{name}'", "name")
        return coll

    def create(self, spec: CollectionSpec, index: Any = None, payloads: dict[int, Any] | None = None) -> Collection:
        check_name(spec.name)
        if self.read_only:
            raise ApiError(405, "this server is read-only (started with --read-only)")
        with self._mutex:
            if spec.name in self._collections or (self.dir / spec.name).exists():
                raise ApiError(409, f"name: a collection named '{spec.name}' exists", "name")
            coll = Collection.create(self.dir, spec, index, payloads)
            self._collections[spec.name] = coll
            return coll

    def drop(self, name: str) -> None:
        if self.read_only:
            raise ApiError(405, "this server is read-only (started with --read-only)")
        with self._mutex:
            coll = self.get(name)
            coll.mark_dropped()
            del self._collections[name]
            # Renaming first makes the drop atomic: a crash leaves a dot-folder, removed at start.
            doomed = self.dir / f".dropped-{name}-{uuid.uuid4().hex}"
            os.rename(self.dir / name, doomed)
            fsync_dir(self.dir)
            shutil.rmtree(doomed, ignore_errors=True)


def import_index(data_dir: str | os.PathLike[str], name: str, index: Any, *, encoder: str | None = None,
                 payloads: dict[int, Any] | None = None) -> None:
    """Make an existing :class:`mlvec.index.Index` (or the path of a saved one) a collection of
    the data folder, with optional payloads by id, while no server uses the folder.

    Example::

        >>> import_index("./data", "docs", "docs.mlvec", encoder="e5")   # then: mlvec serve --data ./data --encoder e5
    """
    from mlvec.index import Index, load

    if not isinstance(index, Index):
        index = load(index, mmap=True)
    if payloads:
        stored = set(index.ids().tolist())
        unknown = [i for i in payloads if i not in stored]
        if unknown:
            raise ValueError(f"payloads: id {unknown[0]} is not in the index")
    catalog = Catalog(data_dir)
    catalog.lock()
    try:
        catalog.load()
        spec = CollectionSpec(check_name(name), "single", index.dim, index.kind, index.metric, encoder)
        catalog.create(spec, index, payloads)
    except ApiError as e:
        raise ValueError(e.message) from None
    finally:
        catalog.close()
