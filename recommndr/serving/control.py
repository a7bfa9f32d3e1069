"""The operator's state, shared by every worker process of the API through one JSON file: whether
the canary is paused, the operator's pending request (promote or roll back, carried out by the
running workflow), and the fault injected into the challenger.

Like the traffic split (``traffic.py``), the state is replaced whole, never mutated, so a request
reads one consistent state without a lock; each worker re-reads the file when it changes (its
inode, mtime or size: a replace always makes a new inode, so two writes in one clock tick are
still seen). A change is a read-modify-write of the file under an exclusive ``flock`` of a lock
file beside it (two workers pausing and injecting a fault at once both land), written to a
temporary file and renamed over the old one (a reader sees the old state or the new, never half).
The file is read with a size bound and checked field by field: a bad one is logged and ignored
(the state last read stays).
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recommndr.serving.faults import KINDS

log = logging.getLogger(__name__)
MAX_CONTROL_BYTES = 64 * 1024
REQUEST_ACTIONS = ("promote", "rollback")
MAX_TEXT = 500  # a reason's characters
MAX_NAME = 256  # an id's, a subject's or a version's
EMPTY: dict[str, Any] = {"paused": False, "request": None, "fault": None}
Stamp = tuple[int, int, int]


def _text(v: Any, limit: int, what: str) -> str:
    if not isinstance(v, str) or len(v) > limit:
        raise ValueError(f"{what}: a string of at most {limit} characters")
    return v


def _time(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{what}: Unix seconds")
    return float(v)


def parse(doc: Any) -> dict[str, Any]:
    """The control state of a JSON document (ValueError naming the first field that is wrong)."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    paused = doc.get("paused", False)
    if not isinstance(paused, bool):
        raise ValueError("paused: true or false")
    req = doc.get("request")
    if req is not None:
        if not isinstance(req, dict) or req.get("action") not in REQUEST_ACTIONS:
            raise ValueError(f"request: an object whose action is one of {REQUEST_ACTIONS}")
        req = {"id": _text(req.get("id"), MAX_NAME, "request.id"), "action": req["action"],
               "by": _text(req.get("by"), MAX_NAME, "request.by"),
               "reason": _text(req.get("reason"), MAX_TEXT, "request.reason"),
               "at": _time(req.get("at"), "request.at")}  # fmt: skip
    fault = doc.get("fault")
    if fault is not None:
        if not isinstance(fault, dict) or fault.get("kind") not in KINDS:
            raise ValueError(f"fault: an object whose kind is one of {KINDS}")
        version = fault.get("version")
        fault = {"kind": fault["kind"], "since": _time(fault.get("since"), "fault.since"),
                 "version": None if version is None else _text(version, MAX_NAME, "fault.version")}  # fmt: skip
    return {"paused": paused, "request": req, "fault": fault}


class ControlState:
    """This worker's copy of the shared state (``state``) and the file behind it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.state: dict[str, Any] = dict(EMPTY)
        self._stamp: Stamp | None = None  # of the file last applied

    def _read(self) -> tuple[Stamp, dict[str, Any]] | None:
        """The file's stamp and state; None when there is no file. ValueError or OSError for a
        file that cannot be used."""
        try:
            with self.path.open("rb") as f:
                st = os.fstat(f.fileno())
                data = f.read(MAX_CONTROL_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(data) > MAX_CONTROL_BYTES:
            raise ValueError(f"over {MAX_CONTROL_BYTES} bytes")
        return (st.st_ino, st.st_mtime_ns, st.st_size), parse(json.loads(data))

    def sync(self) -> bool:
        """Apply the shared file if it changed (another worker's admin call, a restart); True
        when the state was replaced. A bad file is logged once and ignored."""
        try:
            st = self.path.stat()
        except OSError:
            return False
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return False
        try:
            got = self._read()
        except (OSError, ValueError, RecursionError) as exc:
            self._stamp = stamp  # logged once per version of the file, not every second
            log.error("ignoring the control file %s: %s", self.path, exc)
            return False
        if got is None:
            return False
        self._stamp, state = got
        changed = state != self.state
        self.state = state
        return changed

    def update(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        """Apply ``change`` (state -> new state) to the shared file's current state, save it and
        return it (this worker uses it at once). OSError when it cannot be saved: nothing changed."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with lock.open("a") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # released when the file is closed
            try:
                got = self._read()
            except (OSError, ValueError, RecursionError) as exc:  # a bad file: start from what we hold
                log.error("the control file %s is replaced: %s", self.path, exc)
                got = None
            current = got[1] if got is not None else self.state
            new = parse(change(dict(current)))
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            with tmp.open("w") as f:
                json.dump(new, f)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
            st = self.path.stat()
            self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        self.state = new
        return new
