"""The event log behind ``POST /events`` (a 202 means the event survives) and its reader.

Faults the kernel can produce are injected at ``os.write``: a short write (a file-size limit, a
nearly full disk, a signal) and a write that fails part-way. The processes-and-signals proofs are
in ``tests/integration/test_event_durability.py``.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from recommndr.errors import EventLogUnwritableError, ServiceUnavailableError
from recommndr.features import repo
from recommndr.features.repo import read_event_log, read_events
from recommndr.serving.events import EventIn, EventLog

pytestmark = pytest.mark.unit

DAY = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
TORN = b'{"user_id":1,"item_id":2,"event_type":"vi'


def _events(prefix: str, n: int) -> list[EventIn]:
    return [EventIn(user_id=i, item_id=i + 1, event_type="view", event_id=f"{prefix}{i}") for i in range(n)]


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file, parsed: fails on a torn or glued line."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), data[-80:]
    return [json.loads(line) for line in data.splitlines()]


def _line(user: int, eid: str) -> bytes:
    rec = {"user_id": user, "item_id": 5, "event_type": "view", "ts": DAY.isoformat(), "event_id": eid}
    return json.dumps(rec).encode() + b"\n"


def _run(log: EventLog, *batches: list[EventIn]) -> list[list[str]]:
    """Start the log, append the batches one after another, stop it."""

    async def go() -> list[list[str]]:
        await log.start()
        try:
            return [await log.append(b) for b in batches]
        finally:
            await log.stop()

    return asyncio.run(go())


def _log_fd(fd: int, root: Path) -> bool:
    try:
        return str(Path(f"/proc/self/fd/{fd}").readlink()).startswith(str(root))
    except OSError:
        return False


def _patch_write(monkeypatch: pytest.MonkeyPatch, root: Path, fake: Callable[[int, bytes], int]) -> None:
    """Route ``os.write`` calls on files under ``root`` to ``fake`` (given the real write)."""
    real = os.write

    def write(fd: int, data: bytes) -> int:
        return fake(fd, data) if _log_fd(fd, root) else real(fd, data)

    monkeypatch.setattr(os, "write", write)


# -- 1. short writes ---------------------------------------------------------------------------


def test_short_writes_are_continued_until_the_whole_batch_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    _patch_write(monkeypatch, tmp_path, lambda fd, data: real(fd, bytes(data[:100])))  # 100 B per call
    log = EventLog(tmp_path, flush_ms=0, clock=lambda: DAY)
    ids = _run(log, _events("a", 20), _events("b", 5))
    lines = _lines(tmp_path / "events-2026-11-26.jsonl")
    assert [ln["event_id"] for ln in lines] == ids[0] + ids[1]
    assert log.written == 25


def test_a_write_that_fails_part_way_is_not_acknowledged_and_leaves_no_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    log = EventLog(tmp_path, flush_ms=0, clock=lambda: DAY)
    path = tmp_path / "events-2026-11-26.jsonl"

    calls: list[int] = []

    def disk_fills(fd: int, data: bytes) -> int:
        if os.fstat(fd).st_size == 0:  # the first batch fits
            return real(fd, data)
        calls.append(len(data))  # the second fills the disk: 50 bytes go in, then no more
        if len(calls) == 1:
            return real(fd, bytes(data[:50]))
        raise OSError(errno.ENOSPC, "No space left on device")

    async def go() -> None:
        await log.start()
        try:
            await log.append(_events("ok", 3))
            with pytest.raises(OSError) as info:
                await log.append(_events("lost", 4))
            assert info.value.errno == errno.ENOSPC
            assert [ln["event_id"] for ln in _lines(path)] == ["ok0", "ok1", "ok2"]
            monkeypatch.undo()  # space again: the next batch lands after the first, whole
            await log.append(_events("later", 2))
        finally:
            await log.stop()

    _patch_write(monkeypatch, tmp_path, disk_fills)
    asyncio.run(go())
    assert [ln["event_id"] for ln in _lines(path)] == ["ok0", "ok1", "ok2", "later0", "later1"]
    assert log.written == 5


def test_a_write_that_makes_no_progress_raises_instead_of_spinning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EventLog(tmp_path, flush_ms=0, clock=lambda: DAY)

    async def go() -> None:
        await log.start()
        _patch_write(monkeypatch, tmp_path, lambda fd, data: 0)
        try:
            with pytest.raises(OSError) as info:
                await log.append(_events("x", 1))
            assert info.value.errno == errno.ENOSPC
        finally:
            await log.stop()

    asyncio.run(go())
    assert (tmp_path / "events-2026-11-26.jsonl").read_bytes() == b""


# -- 2. torn tails -----------------------------------------------------------------------------


def test_a_torn_last_line_is_cut_off_at_start_and_kept_beside_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "events-2026-11-25.jsonl"  # any day file, not only today's
    old.write_bytes(_line(1, "y1") + TORN)
    path = tmp_path / "events-2026-11-26.jsonl"
    path.write_bytes(_line(1, "p1") + _line(2, "p2") + TORN)
    with caplog.at_level(logging.WARNING, logger="recommndr.serving.events"):
        _run(EventLog(tmp_path, flush_ms=0, clock=lambda: DAY), _events("n", 2))
    assert [ln["event_id"] for ln in _lines(path)] == ["p1", "p2", "n0", "n1"]
    assert [ln["event_id"] for ln in _lines(old)] == ["y1"]
    assert (tmp_path / "events-2026-11-26.jsonl.torn-1").read_bytes() == TORN
    assert (tmp_path / "events-2026-11-25.jsonl.torn-1").read_bytes() == TORN
    warned = [r.getMessage() for r in caplog.records if "torn line" in r.getMessage()]
    assert len(warned) == 2 and "events-2026-11-26.jsonl.torn-1" in warned[1]
    read = read_event_log(tmp_path)  # the side files are not read as events
    assert read.skipped == 0 and read.events.height == 5 and read.files == 2


def test_a_file_that_is_only_a_torn_line_becomes_empty_and_a_second_tear_its_own_side_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events-2026-11-26.jsonl"
    path.write_bytes(b"x" * 200_000)  # longer than one backwards read, and no newline at all
    log = EventLog(tmp_path, flush_ms=0, clock=lambda: DAY)
    log.prepare()
    assert path.read_bytes() == b""
    path.write_bytes(_line(1, "p1") + TORN)
    log.prepare()
    assert (tmp_path / "events-2026-11-26.jsonl.torn-1").read_bytes() == b"x" * 200_000
    assert (tmp_path / "events-2026-11-26.jsonl.torn-2").read_bytes() == TORN
    assert path.read_bytes() == _line(1, "p1")


def test_a_torn_line_left_after_start_by_another_process_is_cut_before_the_next_batch(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events-2026-11-26.jsonl"
    log = EventLog(tmp_path, flush_ms=0, clock=lambda: DAY)

    async def go() -> None:
        await log.start()
        try:
            await log.append(_events("a", 2))
            with path.open("ab") as f:  # another worker, killed in the middle of its batch
                f.write(TORN)
            await log.append(_events("b", 2))
        finally:
            await log.stop()

    asyncio.run(go())
    assert [ln["event_id"] for ln in _lines(path)] == ["a0", "a1", "b0", "b1"]
    assert (tmp_path / "events-2026-11-26.jsonl.torn-1").read_bytes() == TORN


# -- 3. a new day file's name is made durable --------------------------------------------------


def test_the_folder_is_fsynced_when_a_new_day_file_is_first_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "events"
    root.mkdir()
    real = os.fsync
    synced: list[str] = []  # "dir" or the file's name, in order

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            if st.st_ino == root.stat().st_ino:
                synced.append("dir")
        else:
            synced.append(Path(f"/proc/self/fd/{fd}").readlink().name)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    now = [DAY]
    log = EventLog(root, flush_ms=0, clock=lambda: now[0])

    async def go() -> None:
        await log.start()
        synced.clear()  # the start-up probe's own fsyncs
        try:
            await log.append(_events("a", 1))
            await log.append(_events("b", 1))
            now[0] = datetime(2026, 11, 27, 0, 0, 1, tzinfo=UTC)
            await log.append(_events("c", 1))
        finally:
            await log.stop()

    asyncio.run(go())
    d1, d2 = "events-2026-11-26.jsonl", "events-2026-11-27.jsonl"
    assert synced == [d1, "dir", d1, d2, "dir"]  # once per new day file, after its data, before the 202


# -- 5b in-process: two writers on one file ----------------------------------------------------


def test_batches_of_two_writers_never_interleave_even_when_each_takes_many_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write

    def dribble(fd: int, data: bytes) -> int:  # 7 bytes a call, yielding to the other writer
        n = real(fd, bytes(data[:7]))
        time.sleep(0.0002)
        return n

    _patch_write(monkeypatch, tmp_path, dribble)
    # two logs, as two worker processes have: each opens the file itself
    logs = [EventLog(tmp_path, flush_ms=0, clock=lambda: DAY) for _ in range(2)]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            _run(logs[k], *[_events(f"w{k}-{b}-", 3) for b in range(6)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    ids = [ln["event_id"] for ln in _lines(tmp_path / "events-2026-11-26.jsonl")]
    assert sorted(ids) == sorted(f"w{k}-{b}-{i}" for k in range(2) for b in range(6) for i in range(3))


# -- 6. an unwritable folder fails at start ----------------------------------------------------


@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
def test_an_unwritable_folder_fails_start_naming_the_folder_and_the_setting(
    tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("a file where the folder should be")
    root = blocker / "events" if where == "under_a_file" else blocker
    with pytest.raises(EventLogUnwritableError) as info:
        _run(EventLog(root), _events("x", 1))
    message = str(info.value)
    assert str(root) in message and "RECOMMNDR_EVENT_LOG_DIR" in message
    assert isinstance(info.value, ServiceUnavailableError) and info.value.code == "event_log_unwritable"
    assert isinstance(info.value.__cause__, OSError)


def test_a_writable_folder_is_created_and_the_probe_leaves_nothing(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    EventLog(root).prepare()
    assert root.is_dir() and list(root.iterdir()) == []


# -- stop answers what is pending --------------------------------------------------------------


def test_stop_writes_and_answers_what_is_pending(tmp_path: Path) -> None:
    log = EventLog(tmp_path, flush_ms=50, clock=lambda: DAY)  # a long window: appends wait in it

    async def go() -> list[list[str]]:
        await log.start()
        pending = [asyncio.create_task(log.append(_events(f"s{k}-", 2))) for k in range(3)]
        await asyncio.sleep(0)  # the appends join the batch
        await log.stop()
        return [await p for p in pending]

    ids = asyncio.run(go())
    assert sorted(ln["event_id"] for ln in _lines(tmp_path / "events-2026-11-26.jsonl")) == sorted(
        i for b in ids for i in b
    )
    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(log.append(_events("late", 1)))


# -- 4. the reader skips and counts bad lines --------------------------------------------------

GOOD = [
    {"user_id": 1, "item_id": 10, "event_type": "view", "ts": "2026-11-26T10:00:00+00:00", "quantity": 1},
    {"user_id": 2, "item_id": 11, "event_type": "purchase", "ts": "2026-11-26T10:00:00.250000+00:00"},
    {"user_id": 3, "item_id": 12, "event_type": "add_to_cart", "ts": "2026-11-26T12:00:00+02:00"},
    {"user_id": 4, "item_id": 13, "event_type": "view", "ts": "2026-11-26T10:00:00Z"},  # not the API's form
]
BAD = [
    b'{"user_id":5,"item_id":14,"event_type":"vi{"user_id":6,"item_id":15,"event_type":"view","ts":"x"}',
    b'{"item_id":14,"event_type":"view","ts":"2026-11-26T10:00:00+00:00"}',  # no user_id
    b'{"user_id":"seven","item_id":14,"event_type":"view","ts":"2026-11-26T10:00:00+00:00"}',
    b'{"user_id":8,"item_id":14,"event_type":"click","ts":"2026-11-26T10:00:00+00:00"}',
    b'{"user_id":9,"item_id":14,"event_type":"view","ts":"yesterday"}',
    b'{"user_id":-1,"item_id":14,"event_type":"view","ts":"2026-11-26T10:00:00+00:00"}',
    b"[1, 2]",
    b"\xff\xfe not utf-8",
    b'{"user_id":10,"item_id":14}{"user_id":11}',
]


def _good(row: dict[str, object]) -> bytes:
    return json.dumps(row).encode()


def test_the_reader_skips_counts_and_warns_about_lines_that_are_not_events(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [_good(GOOD[0]), BAD[0], _good(GOOD[1]), *BAD[1:], b"", _good(GOOD[2]), _good(GOOD[3])]
    (tmp_path / "events-2026-11-26.jsonl").write_bytes(b"\n".join(lines) + b"\n" + TORN)
    with caplog.at_level(logging.WARNING, logger="recommndr.features.repo"):
        read = read_event_log(tmp_path)
    assert read.skipped == len(BAD) + 1  # and the torn last line
    ev = read.events
    assert ev.columns == ["user_id", "item_id", "event_type", "ts_us"]
    assert ev["user_id"].to_list() == [1, 2, 3, 4]
    base = int(datetime(2026, 11, 26, 10, tzinfo=UTC).timestamp() * 1_000_000)
    assert ev["ts_us"].to_list() == [base, base + 250_000, base, base]
    assert any(f"skipped {len(BAD) + 1} line(s)" in r.getMessage() for r in caplog.records)
    assert read_events(tmp_path).equals(ev)  # the callers' frame, unchanged in shape


def test_the_reader_finds_one_bad_line_in_a_long_file_and_keeps_every_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repo, "_CHUNK_BYTES", 64 * 1024)  # ~50 chunks of the 3 MB below
    n = 40_000
    rows = [
        _good({"user_id": i, "item_id": i % 97, "event_type": "view", "ts": "2026-11-26T10:00:00+00:00"})
        for i in range(n)
    ]
    rows[23_456] = rows[23_456][:30]  # torn, and the next batch glued onto it
    rows[23_456] += rows.pop(23_457)
    (tmp_path / "events-2026-11-26.jsonl").write_bytes(b"\n".join(rows) + b"\n")
    (tmp_path / "events-2026-11-27.jsonl").write_bytes(_good(GOOD[0]) + b"\n")
    read = read_event_log(tmp_path)
    assert read.skipped == 1 and read.files == 2
    users = read.events["user_id"].to_list()
    assert users == [*range(23_456), *range(23_458, n), 1]


def test_the_reader_reads_an_empty_file_and_a_parquet_table(tmp_path: Path) -> None:
    (tmp_path / "events-2026-11-26.jsonl").write_bytes(b"")
    assert read_event_log(tmp_path).events.height == 0
    table = tmp_path / "t" / "events.parquet"
    table.parent.mkdir()
    pl.DataFrame(
        {"user_id": [1, None], "item_id": [2, 3], "event_type": ["view", "view"], "ts": [DAY, DAY]}
    ).write_parquet(table)
    read = read_event_log(table)
    assert read.events["user_id"].to_list() == [1] and read.skipped == 1
