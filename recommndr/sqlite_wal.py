"""Opening an SQLite file in WAL mode, safely when several processes open a new file at once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def connect_wal(
    path: Path, timeout_s: float, *, synchronous: str | None = "NORMAL", check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode, in autocommit (``BEGIN`` is explicit).

    Switching a file into WAL needs its exclusive lock, and SQLite answers "database is locked"
    at once, without waiting out ``timeout_s``, when another connection is writing the file then
    (two processes opening a new store together). So the switch is retried until ``timeout_s``;
    a file already in WAL needs no lock for it."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=check_same_thread)
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    try:
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 0.05)
        if synchronous is not None:
            conn.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn
