"""Opening a store file in WAL mode while another connection writes it (two processes opening a
new store together): SQLite refuses the switch at once, without waiting out its busy timeout."""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from recommndr.sqlite_wal import connect_wal


def _writer_holding_the_lock(path: Path, hold_s: float) -> tuple[sqlite3.Connection, threading.Thread]:
    """A connection with an open write transaction on a new (rollback-journal) file, committed
    after ``hold_s``."""
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (a)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(hold_s, lambda: writer.execute("COMMIT"))
    release.start()
    return writer, release


def test_the_bare_switch_fails_at_once_while_another_connection_writes(tmp_path: Path) -> None:
    """Why ``connect_wal`` exists: the plain pragma, busy timeout or not."""
    path = tmp_path / "store.db"
    writer, release = _writer_holding_the_lock(path, 0.5)
    with (
        closing(sqlite3.connect(path, timeout=5.0, isolation_level=None)) as c,
        pytest.raises(sqlite3.OperationalError, match="locked"),
    ):
        c.execute("PRAGMA journal_mode=WAL")
    release.join()
    writer.close()


def test_connect_wal_waits_for_the_writer_and_switches(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    writer, release = _writer_holding_the_lock(path, 0.3)
    started = time.monotonic()
    with closing(connect_wal(path, 5.0)) as c:
        assert time.monotonic() - started >= 0.2, "it cannot have switched while the lock was held"
        assert c.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert c.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert c.execute("SELECT a FROM t").fetchall() == [(1,)], "the writer's commit is there"
    release.join()
    writer.close()


def test_connect_wal_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    writer, release = _writer_holding_the_lock(path, 2.0)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        connect_wal(path, 0.3)
    assert 0.2 <= time.monotonic() - started < 1.5
    release.join()
    writer.close()


def test_connect_wal_sets_the_sync_level_asked_for(tmp_path: Path) -> None:
    with closing(connect_wal(tmp_path / "a.db", 1.0, synchronous="FULL")) as c:
        assert c.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
        assert c.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_connect_wal_raises_other_errors_at_once(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not an sqlite file, but long enough to have a header" * 100)
    started = time.monotonic()
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        connect_wal(junk, 5.0)
    assert time.monotonic() - started < 1.0, "no retry for an error that is not a lock"


def test_a_file_already_in_wal_opens_while_another_connection_writes(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    connect_wal(path, 1.0).close()
    with closing(connect_wal(path, 1.0)) as writer:
        writer.execute("CREATE TABLE t (a)")
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO t VALUES (1)")
        started = time.monotonic()
        with closing(connect_wal(path, 5.0)) as c:
            assert time.monotonic() - started < 0.5
            assert c.execute("SELECT count(*) FROM t").fetchone() == (0,), "the write is not committed"
        writer.execute("COMMIT")
