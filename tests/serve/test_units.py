"""The service's parts on their own: the log, its records, keys, names and configuration."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the service tests need the 'serve' extra")

from mlvec.serve import records  # noqa: E402
from mlvec.serve.catalog import check_name  # noqa: E402
from mlvec.serve.config import ApiKeys, EncoderSpec, Limits, ServeConfig, check_bind  # noqa: E402
from mlvec.serve.errors import ApiError  # noqa: E402
from mlvec.serve.kinds import KINDS  # noqa: E402
from mlvec.serve.rwlock import RWLock  # noqa: E402
from mlvec.serve.wal import WalCorruptError, WriteAheadLog  # noqa: E402

SINGLE = KINDS["single"]


def bodies(wal: WriteAheadLog, after: int = 0) -> list[tuple[int, bytes]]:
    return list(wal.replay(after))


def test_log_round_trip_rotation_and_truncation(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.replay(0)
    wal.open_for_append()
    assert [wal.append(f"r{i}".encode()) for i in range(1, 4)] == [1, 2, 3]
    wal.rotate()
    assert wal.append(b"r4") == 4
    assert len(wal.segments()) == 2
    wal.drop_through(3)  # the first segment holds 1..3 only
    assert [s for s, _ in wal.segments()] == [4]
    wal.close()
    again = WriteAheadLog(tmp_path)
    assert bodies(again, 3) == [(4, b"r4")]
    assert again.last_seq == 4
    assert bodies(WriteAheadLog(tmp_path), 4) == []


@pytest.mark.parametrize("cut", [1, 8, 15, 17, 20])
def test_a_torn_last_record_is_cut_off(tmp_path, cut):
    wal = WriteAheadLog(tmp_path)
    wal.replay(0)
    wal.open_for_append()
    wal.append(b"first")
    wal.append(b"second record")
    wal.close()
    (seg,) = [p for _, p in wal.segments()]
    size = seg.stat().st_size
    os.truncate(seg, size - cut)
    again = WriteAheadLog(tmp_path)
    assert bodies(again) == [(1, b"first")]
    assert seg.stat().st_size == 16 + len(b"first")  # the torn tail is gone from the file
    again.open_for_append()
    assert again.append(b"third") == 2


def test_a_bad_checksum_at_the_tail_is_cut_and_in_the_middle_is_corruption(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.replay(0)
    wal.open_for_append()
    for b in (b"aaaa", b"bbbb"):
        wal.append(b)
    wal.rotate()
    wal.append(b"cccc")
    wal.close()
    first, second = [p for _, p in wal.segments()]
    data = bytearray(second.read_bytes())
    data[-1] ^= 0xFF
    second.write_bytes(bytes(data))
    assert [s for s, _ in bodies(WriteAheadLog(tmp_path))] == [1, 2]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(WalCorruptError, match="bad checksum"):
        bodies(WriteAheadLog(tmp_path))


def test_records_round_trip_and_fold_keeps_the_last_word():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    up = records.Upsert(np.array([5, 6, 7]), x, [{"a": 1}, None, "text"])
    back = records.decode(records.encode(up, SINGLE), SINGLE)
    assert back.ids.tolist() == [5, 6, 7] and back.payloads == [{"a": 1}, None, "text"]
    np.testing.assert_array_equal(back.vectors, x)
    dl = records.decode(records.encode(records.Delete(np.array([6])), SINGLE), SINGLE)
    assert isinstance(dl, records.Delete) and dl.ids.tolist() == [6]
    later = records.Upsert(np.array([7, 8]), x[:2] + 100, None)
    folded = records.fold([up, dl, later, records.Delete(np.array([5]))], SINGLE)
    assert folded.deleted.tolist() == [5, 6]
    assert folded.upsert.ids.tolist() == [7, 8] and folded.upsert.payloads == [None, None]
    np.testing.assert_array_equal(folded.upsert.vectors, x[:2] + 100)


def test_keys_scopes_files_and_environment(tmp_path):
    f = tmp_path / "keys"
    f.write_text("# comment\nread r-0123456789abcdef\nwrite w-0123456789abcdef\n")
    keys = ApiKeys.from_sources(f, environ={"MLVEC_SERVE_READ_KEYS": "e-0123456789abcdef, x-0123456789abcdef"})
    assert keys.scope_of("r-0123456789abcdef") == "read"
    assert keys.scope_of("e-0123456789abcdef") == "read"
    assert keys.scope_of("w-0123456789abcdef") == "write"
    assert keys.scope_of("w-0123456789abcdeF") is None and keys.scope_of(None) is None
    assert "r-0123456789abcdef" not in ServeConfig("d", keys=keys).to_json()  # only digests travel
    f.write_text("read short\n")
    with pytest.raises(ValueError, match="at least 16"):
        ApiKeys.from_sources(f, environ={})
    f.write_text("admin k-0123456789abcdef\n")
    with pytest.raises(ValueError, match="line 1"):
        ApiKeys.from_sources(f, environ={})


def test_open_service_binds_to_loopback_only():
    check_bind("127.0.0.1", ApiKeys())
    check_bind("::1", ApiKeys())
    check_bind("localhost", ApiKeys())
    with pytest.raises(ValueError, match="loopback only"):
        check_bind("0.0.0.0", ApiKeys())
    check_bind("0.0.0.0", ApiKeys(write=("digest",)))


def test_config_round_trips_and_checks():
    cfg = ServeConfig("d", encoders=(EncoderSpec.parse("e5"), EncoderSpec.parse("mine=/models/x")),
                      limits=Limits(max_k=5), search_threads=3, micro_batch=False)
    assert ServeConfig.from_json(cfg.to_json()) == cfg
    assert cfg.encoders[1] == EncoderSpec("mine", "/models/x")
    with pytest.raises(ValueError, match="max_k"):
        Limits(max_k=0)
    with pytest.raises(ValueError, match="distinct"):
        ServeConfig("d", encoders=(EncoderSpec.parse("e5"), EncoderSpec.parse("e5")))


@pytest.mark.parametrize("name", ["ok", "A-1_b", "9" * 64])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["../x", "a/b", "a\\b", ".x", "_x", "x" * 65, "nul\0", "a.b", ""])
def test_invalid_names(name):
    with pytest.raises(ApiError) as e:
        check_name(name)
    assert e.value.status == 400 and e.value.field == "name"


def test_rwlock_writer_excludes_readers_and_is_not_starved():
    lock = RWLock()
    inside: list[str] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            with lock.read():
                inside.append("r")
                time.sleep(0.001)
                inside.append("/r")

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    time.sleep(0.02)
    t0 = time.monotonic()
    with lock.write():
        depth = 0
        for ev in inside:
            depth += 1 if ev == "r" else -1
        assert depth == 0  # no reader inside while the writer is
    assert time.monotonic() - t0 < 1.0
    stop.set()
    for t in readers:
        t.join()
