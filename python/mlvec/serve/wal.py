"""Write-ahead log: every acknowledged write is a record on disk (fsync) before the response.

A log is a folder of segments ``<first seq, 20 digits>.wal``. A record is a 16-byte header
(``body length: u32``, ``crc32 of seq and body: u32``, ``seq: u64``, little-endian) and its body;
sequence numbers are consecutive from 1. A snapshot at ``seq`` makes the segments before it
redundant: :meth:`WriteAheadLog.rotate` starts a fresh segment so that
:meth:`WriteAheadLog.drop_through` can delete whole files.

A crash can leave the last record of the last segment torn (short or with a bad checksum): it
was never acknowledged, so reading stops there and the tail is cut off. A bad record anywhere
else is corruption and stops the collection from loading, with the file and offset named.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

HEADER = struct.Struct("<IIQ")
SEGMENT = re.compile(r"^(\d{20})\.wal$")
MAX_RECORD_BYTES = 2**31


class WalCorruptError(RuntimeError):
    """A record other than the last one is unreadable."""


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _checksum(seq: int, body: bytes | memoryview) -> int:
    return zlib.crc32(body, zlib.crc32(seq.to_bytes(8, "little")))


class WriteAheadLog:
    """The log of one collection. Not thread-safe: the collection serialises writers."""

    def __init__(self, directory: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self.dir = Path(directory)
        self.read_only = read_only
        if not read_only:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.last_seq = 0
        self._file = None
        self._broken: BaseException | None = None

    # -- reading ----------------------------------------------------------------------------
    def segments(self) -> list[tuple[int, Path]]:
        """``(first seq, path)`` of each segment, oldest first."""
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), self.dir / name) for name in os.listdir(self.dir) if (m := SEGMENT.match(name))]
        return sorted(found)

    def replay(self, after_seq: int) -> Iterator[tuple[int, bytes]]:
        """Yield ``(seq, body)`` of every record with ``seq > after_seq``, oldest first; cut off a
        torn tail. Afterwards :attr:`last_seq` is the last good record (or ``after_seq``)."""
        self.last_seq = after_seq
        segments = self.segments()
        expected: int | None = None
        for i, (first, path) in enumerate(segments):
            is_last = i == len(segments) - 1
            if expected is not None and first != expected:
                raise WalCorruptError(f"{path}: starts at record {first}, expected {expected} (a segment is missing)")
            seq = first
            with open(path, "rb") as f:
                data = f.read()
            offset = 0
            while offset < len(data):
                problem = None
                if len(data) - offset < HEADER.size:
                    problem = "short header"
                else:
                    length, crc, rec_seq = HEADER.unpack_from(data, offset)
                    end = offset + HEADER.size + length
                    if end > len(data):
                        problem = "short body"
                    else:
                        body = memoryview(data)[offset + HEADER.size : end]
                        if _checksum(rec_seq, body) != crc:
                            problem = "bad checksum"
                        elif rec_seq != seq:
                            problem = f"record {rec_seq} where {seq} was expected"
                if problem is not None:
                    if not is_last:
                        raise WalCorruptError(f"{path}: {problem} at byte {offset}")
                    self._cut(path, offset)
                    break
                if seq > after_seq:
                    yield seq, bytes(body)
                    self.last_seq = seq
                seq += 1
                offset = end
            expected = seq
        if expected is not None and expected - 1 > self.last_seq:
            self.last_seq = expected - 1

    def _cut(self, path: Path, offset: int) -> None:
        """Drop a torn tail: it was never acknowledged (its writer crashed before the fsync)."""
        if self.read_only:
            return
        with open(path, "r+b") as f:
            f.truncate(offset)
            os.fsync(f.fileno())

    def size_bytes(self) -> int:
        total = 0
        for _, p in self.segments():
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass  # dropped behind a snapshot meanwhile
        return total

    # -- writing ----------------------------------------------------------------------------
    def open_for_append(self) -> None:
        """Append to the newest segment, or start one after :attr:`last_seq`."""
        segments = self.segments()
        if segments:
            self._file = open(segments[-1][1], "ab")
        else:
            self._start_segment()

    def _start_segment(self) -> None:
        if self._file is not None:
            self._file.close()
        path = self.dir / f"{self.last_seq + 1:020d}.wal"
        self._file = open(path, "ab")
        fsync_dir(self.dir)

    def append(self, body: bytes) -> int:
        """Write one record and fsync it; returns its sequence number. A failed write is cut
        back off the file, and the log refuses further writes after a failed fsync (the page
        cache may then disagree with the disk)."""
        if self._broken is not None:
            raise OSError(f"the write-ahead log in {self.dir} failed earlier: {self._broken}")
        if self._file is None:
            raise RuntimeError("write-ahead log not opened for appending")
        if len(body) >= MAX_RECORD_BYTES:
            raise ValueError(f"record of {len(body)} bytes is too large for the log")
        seq = self.last_seq + 1
        f = self._file
        start = f.tell()
        try:
            f.write(HEADER.pack(len(body), _checksum(seq, body), seq))
            f.write(body)
            f.flush()
        except BaseException:
            f.seek(start)
            f.truncate(start)
            raise
        try:
            os.fdatasync(f.fileno())
        except BaseException as e:
            self._broken = e
            raise
        self.last_seq = seq
        return seq

    def rotate(self) -> None:
        """Start a new segment at the next record (if the current one holds any)."""
        if self._file is not None and self._file.tell() > 0:
            self._start_segment()

    def drop_through(self, seq: int) -> None:
        """Delete the segments all of whose records are ``<= seq`` (never the newest one)."""
        segments = self.segments()
        removed = False
        for (_, path), (next_first, _) in zip(segments, segments[1:], strict=False):
            if next_first <= seq + 1:
                path.unlink()
                removed = True
        if removed:
            fsync_dir(self.dir)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
