"""Opening an SQLite file in WAL mode, safely when several processes open a new file at once."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def connect_wal(
    path: Path, timeout_s: float, *, synchronous: str = "NORMAL", check_same_thread: bool = True
) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode, in autocommit (``BEGIN`` is explicit), with
    ``PRAGMA synchronous`` set to ``synchronous``.

    Switching a file into WAL needs its exclusive lock, and SQLite answers "database is locked"
    at once, without its busy handler, while another connection uses the file in the old journal
    mode (two processes opening a new store together). So the switch is retried for about
    ``timeout_s`` (each try may also wait up to ``timeout_s`` in SQLite's busy handler); a file
    already in WAL needs no lock for it. A file that cannot be in WAL (a filesystem without shared
    memory) keeps its mode, with a warning."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=check_same_thread)
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    try:
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
                break
            except sqlite3.OperationalError as exc:
                if (
                    getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _BUSY
                    or time.monotonic() + pause > deadline
                ):
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 0.05)
        if mode != "wal":
            log.warning("%s: SQLite kept journal mode %r (WAL refused)", path, mode)
        conn.execute(f"PRAGMA synchronous={synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn
