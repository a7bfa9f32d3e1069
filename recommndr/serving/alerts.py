"""The alert inbox: the last alerts Alertmanager sent to ``POST /alerts/webhook``, kept in a small
SQLite file so that every worker process of the API sees the same ones (a scrape, a webhook call
and an admin's ``GET /alerts`` may each reach a different worker) and they survive a restart.

This is the seam the canary and rollback work acts on: it reads what arrived since the last id it
saw (``GET /alerts?after=ID``, or :meth:`AlertInbox.since` in-process), each alert with its labels
(``alertname``, ``severity``, ``variant``) and annotations (``action``, ``value``, ``threshold``)
as the rules in ``infra/monitoring/rules/alerts.yml`` write them. The inbox keeps ``capacity``
alerts; each insert drops what is older in the same transaction, so the file stays bounded.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from recommndr.serving.schemas import AlertWebhookIn
from recommndr.sqlite_wal import connect_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    receiver TEXT NOT NULL,
    status TEXT NOT NULL,
    alertname TEXT NOT NULL,
    severity TEXT NOT NULL,
    variant TEXT,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    generator_url TEXT NOT NULL
)
"""
_COLUMNS = ("id", "received_at", "receiver", "status", "alertname", "severity", "variant", "labels",
            "annotations", "starts_at", "ends_at", "fingerprint", "generator_url")  # fmt: skip

_INSERT = f"INSERT INTO alerts ({', '.join(_COLUMNS[1:])}) VALUES ({', '.join('?' * (len(_COLUMNS) - 1))})"


def _iso(t: Any) -> str:
    return str(t.isoformat().replace("+00:00", "Z"))


class AlertInbox:
    """The last ``capacity`` alerts received, oldest dropped first; opened on first use (an API
    that never receives an alert creates no file)."""

    def __init__(self, path: Path, capacity: int) -> None:
        self.path = Path(path)
        self.capacity = capacity
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, used from worker threads in turn

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # WAL: workers read while another writes; every commit synced
            db = connect_wal(self.path, 10.0, synchronous="FULL", check_same_thread=False)
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def record(self, body: AlertWebhookIn, received_at: float | None = None) -> list[int]:
        """Store every alert of one webhook call; their ids, in the body's order."""
        now = time.time() if received_at is None else received_at
        rows = [
            (now, body.receiver, a.status, a.labels.get("alertname", ""), a.labels.get("severity", ""),
             a.labels.get("variant"), orjson.dumps(a.labels).decode(), orjson.dumps(a.annotations).decode(),
             _iso(a.starts_at), _iso(a.ends_at), a.fingerprint, a.generator_url)
            for a in body.alerts
        ]  # fmt: skip
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                ids = [int(db.execute(_INSERT, row).lastrowid or 0) for row in rows]
                db.execute("DELETE FROM alerts WHERE id <= ?", (ids[-1] - self.capacity,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return ids

    def since(self, after: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Alerts in the order received: the first ``limit`` with an id above ``after`` (a cursor:
        pass the last id seen), or without ``after`` the newest ``limit``."""
        cols = ", ".join(_COLUMNS)
        with self._lock:
            if not self.path.exists() and self._db is None:
                return []
            db = self._conn()
            if after is None:
                sql = f"SELECT * FROM (SELECT {cols} FROM alerts ORDER BY id DESC LIMIT ?) ORDER BY id"
                rows = db.execute(sql, (limit,)).fetchall()
            else:
                sql = f"SELECT {cols} FROM alerts WHERE id > ? ORDER BY id LIMIT ?"
                rows = db.execute(sql, (after, limit)).fetchall()
        out = []
        for row in rows:
            alert = dict(zip(_COLUMNS, row, strict=True))
            alert["labels"] = orjson.loads(alert["labels"])
            alert["annotations"] = orjson.loads(alert["annotations"])
            out.append(alert)
        return out

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
