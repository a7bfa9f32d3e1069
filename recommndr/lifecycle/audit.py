"""The append-only audit trail of the model lifecycle: who moved ``champion``, when and why.

MLflow keeps no history of its aliases (an alias moved twice leaves no trace of the first
holder), so every transition — an alias move, a traffic change, a canary step, a promotion, a
rollback, a pause, an injected fault — is appended here as one JSON line. Each line is chained to
the one before: ``prev`` is the SHA-256 of the previous line's bytes and ``hash`` the SHA-256 of
the entry itself (without ``hash``), so :meth:`AuditTrail.verify` finds any line edited, removed
or reordered. (A chain cannot tell that its last lines were cut off or rewritten together: keep
the count and last hash :meth:`AuditTrail.verify` and :meth:`AuditTrail.read` give somewhere else
to anchor it.)

Several processes append to one file (the API's workers, the workflow's activities): each append
takes an exclusive ``fcntl.flock`` on the file, reads the last line for its ``seq`` and hash, and
writes its own line with one ``write`` on an ``O_APPEND`` descriptor, then fsyncs; readers take a
shared lock, so they never see half a line. A line is at most :data:`MAX_LINE_BYTES`: details
that would pass it are replaced by a note of their size, and a line still too long is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from recommndr.errors import ArtifactError

MAX_LINE_BYTES = 16 * 1024
MAX_READ = 500  # entries one read returns at most
MAX_BY = 256  # characters of ``by``
MAX_REASON = 2000  # characters of ``reason``
# the actions the lifecycle records (others are allowed if they are short identifiers)
ACTIONS = frozenset({"alias", "traffic", "promote", "rollback", "pause", "resume", "canary_step", "fault",
                     "retrain", "rejected"})  # fmt: skip
_ACTION = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _canonical(entry: dict[str, Any]) -> bytes:
    """The one serialisation of an entry: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the entry without its ``hash`` field."""
    return _digest(_canonical({k: v for k, v in entry.items() if k != "hash"}))


class AuditTrail:
    """One JSON-lines file; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _writer(self) -> Iterator[BinaryIO]:
        """The file opened for appending (created if need be) under an exclusive lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+b", buffering=0) as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed
            yield f

    @contextmanager
    def _reader(self) -> Iterator[BinaryIO | None]:
        """The file opened for reading under a shared lock (None while it does not exist)."""
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            yield None
            return
        with f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            yield f

    def _lines(self, f: BinaryIO) -> Iterator[tuple[int, bytes]]:
        """(line number from 1, line with its newline): ArtifactError for a line over the bound,
        which is never read whole."""
        n = 0
        while line := f.readline(MAX_LINE_BYTES + 2):
            n += 1
            if len(line) > MAX_LINE_BYTES + 1:  # its newline aside
                raise ArtifactError(f"{self.path}: line {n} is over {MAX_LINE_BYTES} bytes")
            yield n, line

    def _last(self, f: BinaryIO) -> tuple[int, str]:
        """The last entry's ``seq`` and the SHA-256 of its line ((0, "") for an empty file)."""
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0, ""
        start = max(0, size - MAX_LINE_BYTES - 2)  # the line, its newline and the one before
        f.seek(start)
        tail = f.read(size - start)
        if not tail.endswith(b"\n"):
            raise ArtifactError(f"{self.path}: the last line is incomplete (a torn write); repair the file")
        body = tail[:-1]
        cut = body.rfind(b"\n")
        if cut < 0 and start > 0:
            raise ArtifactError(f"{self.path}: the last line is over {MAX_LINE_BYTES} bytes")
        line = body[cut + 1 :]
        try:
            seq = json.loads(line)["seq"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{self.path}: the last line is not an audit entry: {exc}") from exc
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ArtifactError(f"{self.path}: the last line's seq is not an integer")
        return seq, _digest(line)

    def append(
        self, action: str, by: str, reason: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Append one entry and return it (with its ``seq`` and ``hash``). ValueError for an
        action that is not a short identifier, a ``by`` or ``reason`` over their bounds, or
        details that are not a JSON object; details that would make the line longer than
        :data:`MAX_LINE_BYTES` are replaced by ``{"truncated": true, "bytes": n}``."""
        if not _ACTION.fullmatch(action):
            raise ValueError(f"action {action!r}: a lower-case identifier of at most 32 characters")
        if len(by) > MAX_BY or len(reason) > MAX_REASON:
            raise ValueError(f"by: at most {MAX_BY} characters; reason: at most {MAX_REASON}")
        details = dict(details or {})
        try:  # NaN, a lone surrogate or an object JSON cannot hold: refused before the lock
            _canonical({"by": by, "reason": reason, "details": details})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"by, reason and details must be JSON text: {exc}") from exc
        with self._writer() as f:
            seq, prev = self._last(f)
            entry: dict[str, Any] = {"seq": seq + 1, "at": datetime.now(UTC).isoformat(), "action": action,
                                     "by": by, "reason": reason, "details": details, "prev": prev}  # fmt: skip
            line = self._line(entry)
            if len(line) > MAX_LINE_BYTES:
                entry["details"] = {"truncated": True, "bytes": len(_canonical(details))}
                line = self._line(entry)
            if len(line) > MAX_LINE_BYTES:  # pragma: no cover - the bounds above keep it short
                raise ValueError(f"the entry is over {MAX_LINE_BYTES} bytes")
            f.write(line + b"\n")
            os.fsync(f.fileno())
        return entry

    @staticmethod
    def _line(entry: dict[str, Any]) -> bytes:
        entry["hash"] = entry_hash(entry)
        return _canonical(entry)

    def read(self, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """The entries with ``seq > after``, oldest first, at most ``limit`` (≤ :data:`MAX_READ`).
        Entries are numbered from 1 in file order (``verify`` checks that each line's ``seq`` is
        its line number), so the lines before ``after`` are skipped without being parsed."""
        if after < 0 or not 1 <= limit <= MAX_READ:
            raise ValueError(f"after >= 0 and 1 <= limit <= {MAX_READ} are required")
        out: list[dict[str, Any]] = []
        with self._reader() as f:
            if f is None:
                return out
            for n, line in self._lines(f):
                if n <= after:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError as exc:
                    raise ArtifactError(f"{self.path}: line {n} is not JSON: {exc}") from exc
                if len(out) == limit:
                    break
        return out

    def verify(self) -> int:
        """The number of entries; ArtifactError naming the first line where the chain breaks (a
        line edited, removed, inserted or reordered, or not an entry at all)."""
        with self._reader() as f:
            if f is None:
                return 0
            prev, n = "", 0
            for n, raw in self._lines(f):
                if not raw.endswith(b"\n"):
                    raise ArtifactError(f"{self.path}: line {n} is incomplete (a torn write)")
                line = raw[:-1]
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    raise ArtifactError(f"{self.path}: line {n} is not JSON: {exc}") from exc
                if not isinstance(entry, dict):
                    raise ArtifactError(f"{self.path}: line {n} is not an entry")
                if entry.get("seq") != n:
                    raise ArtifactError(f"{self.path}: line {n} has seq {entry.get('seq')!r}, not {n}")
                if entry.get("prev") != prev:
                    raise ArtifactError(f"{self.path}: line {n} does not follow line {n - 1} (prev differs)")
                if entry.get("hash") != entry_hash(entry):
                    raise ArtifactError(f"{self.path}: line {n} was changed (its hash differs)")
                prev = _digest(line)
            return n
