"""``POST /events``: the event schema and a durable, append-only local log with group commit.

A 202 means the events are on disk: each request's lines join a batch that one writer appends and
fsyncs (every ``flush_ms`` or sooner when idle), then every request of the batch is answered. The
log is one JSON-lines file per UTC day under ``event_log_dir``. With ``event_broker`` set, the
producer (``recommndr.streaming.producer``) stands behind the same interface, and an EventLog is
its spool.

What keeps that promise, with several worker processes appending to the same day file:

- a batch is written whole under an exclusive ``flock`` (a short write is continued, so another
  worker's batch never lands inside it) and fsynced; the folder is fsynced the first time a process
  writes to a day file, so a new file's name survives a power cut too;
- a batch that fails part-way (disk full, file-size limit, I/O error) is cut back off the file and
  answered with an error (the API's 503): nothing of it is acknowledged, and no torn line stays;
- a file removed while a writer waited for its lock (the spool's drainer deletes a file it has
  shipped, under that lock) is never written: the writer opens the name anew;
- a torn last line left by a crash (a file that does not end in a newline) is cut off at start and
  before each write, its bytes kept beside the file in ``<name>.torn-<n>``: the next batch is never
  glued onto it. Such a line was never acknowledged: its fsync had not returned.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from recommndr.errors import EventLogUnwritableError
from recommndr.files import fsync_dir, write_all

log = logging.getLogger(__name__)

_TAIL_CHUNK = 64 * 1024  # how far back each read goes when looking for a torn line's start


INT64_MAX = 2**63 - 1
MAX_FUTURE = timedelta(minutes=5)  # how far after its receipt an event's time may be for the stream
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def _json_number(v: object) -> object:
    """An integer as JSON Schema means it: a number (5 or 5.0), never a string or a boolean."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("a JSON number is expected")
    return v


def _iso_text(v: object) -> object:
    """A timestamp as the schema says: an ISO 8601 string (or null), not an epoch number."""
    if v is not None and not isinstance(v, str):
        raise ValueError("an ISO 8601 date-time string is expected")
    return v


Id = Annotated[int, Field(ge=0, le=INT64_MAX), BeforeValidator(_json_number)]


class EventIn(BaseModel):
    """One shopper event, as the storefront sends it."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id  # 5 and 5.0 (JSON integers), not "5" or true
    item_id: Id
    event_type: Literal["view", "add_to_cart", "purchase"]
    ts: Annotated[datetime | None, BeforeValidator(_iso_text)] = Field(
        None, description="when it happened (UTC); default: when received"
    )
    session_id: Id | None = None
    price: float | None = Field(None, gt=0, allow_inf_nan=False, strict=True)
    quantity: Annotated[int, BeforeValidator(_json_number)] = Field(1, ge=1, le=10_000)
    event_id: str | None = Field(None, min_length=1, max_length=128)
    variant: Literal["champion", "challenger"] | None = Field(
        None,
        description="the A/B variant of the list the event came from, as /recommendations said; "
        "absent for events not from a list. Metrics count a list's event under the variant the API "
        "assigns the user, whichever this field names",
    )
    model_version: str | None = Field(None, max_length=64)

    @field_validator("ts")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        try:
            return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
        except OverflowError as exc:  # 0001-01-01T00:00+05:00 has no UTC time
            raise ValueError("the time is outside the range of UTC timestamps") from exc


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _line_start(fd: int, size: int) -> int:
    """The offset just past the last newline before ``size`` (0 when there is none)."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        i = os.pread(fd, end - start, start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


def _keep_torn(path: Path, torn: bytes) -> Path:
    """Write the torn bytes to the first free ``<name>.torn-<n>`` beside ``path``, durably."""
    n = 1
    while True:
        side = path.with_name(f"{path.name}.torn-{n}")
        try:
            fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            n += 1
            continue
        try:
            write_all(fd, torn)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
        return side


def _ends_in_newline(path: Path) -> bool:
    """Whether the file is empty or ends in a newline (no lock: a writer may be mid-batch)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        return size == 0 or os.pread(fd, 1, size - 1) == b"\n"
    finally:
        os.close(fd)


def _repair_tail(fd: int, path: Path) -> int:
    """Cut a torn last line (no trailing newline: a crash mid-write) off the file, after keeping
    its bytes in a side file; returns the file's size. The caller holds the file's lock."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    keep = _line_start(fd, size)
    side = _keep_torn(path, os.pread(fd, size - keep, keep))
    os.ftruncate(fd, keep)
    os.fsync(fd)
    log.warning(
        "%s ended in a torn line (%d bytes, never acknowledged): cut off, kept in %s",
        path, size - keep, side.name,
    )  # fmt: skip
    return keep


def _cut_back(fd: int, size: int, path: Path) -> None:
    """Remove what a failed batch left after ``size``: none of it was acknowledged."""
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError as exc:  # the next write (or start) cuts the torn tail off instead
        log.error("%s: could not cut a failed batch off at %d bytes: %s", path, size, exc)


def event_records(
    events: list[EventIn], now: datetime, *, ts_ms: bool = False
) -> tuple[list[str], list[str]]:
    """The events' ids (``event_id``, else a new one) and their records as the log writes them:
    the event's fields, ``ts`` (default ``now``) and ``received_at`` in ISO 8601; with ``ts_ms``
    also the event time as epoch milliseconds (what the broker's consumers read), at most
    :data:`MAX_FUTURE` after ``now``: the record keeps the client's ``ts``, but an event stamped in
    the future never moves the streaming job's event-time clock (its watermark) past real events."""
    ids, lines = [], []
    for e in events:
        eid = e.event_id or uuid.uuid4().hex
        ids.append(eid)
        rec = e.model_dump(mode="json")
        ts = e.ts or now
        rec["event_id"] = eid
        rec["ts"] = ts.isoformat()
        rec["received_at"] = now.isoformat()
        if ts_ms:
            rec["ts_ms"] = (min(ts, now + MAX_FUTURE) - EPOCH) // MILLISECOND
        lines.append(json.dumps(rec, separators=(",", ":")))
    return ids, lines


class EventLog:
    """Append-only JSON-lines log with group commit (write + fsync once per batch).

    Several processes may append to the same folder at once (``serve --workers N``): each batch is
    written under an exclusive ``flock`` on the day file. ``clock`` (UTC now) names the day file
    and stamps ``received_at``; tests pass their own.
    """

    def __init__(
        self, root: Path, flush_ms: float = 5.0, *, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self.root = Path(root)
        self.flush_s = flush_ms / 1000.0
        self._clock = clock
        self._pending: list[tuple[list[str], asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # the day file (name, inode) whose name this process made durable
        self._dir_synced_for: tuple[str, int] | None = None
        self.written = 0

    def prepare(self) -> None:
        """Create the folder, check that files can be written in it and cut off torn last lines
        that a crash left; raises :class:`EventLogUnwritableError` naming the folder and setting.
        ``start`` calls it; a command may call it first, to fail before it serves anything."""
        probe = self.root / f".write-probe-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            if not self.root.is_dir():
                self.root.mkdir(parents=True, exist_ok=True)
                fsync_dir(self.root.parent)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                write_all(fd, b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
            for path in sorted(self.root.glob("events-*.jsonl")):
                if _ends_in_newline(path):  # most files: read only, never opened for writing
                    continue
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # a live worker's batch is never half-seen
                    _repair_tail(fd, path)
                finally:
                    os.close(fd)
        except OSError as exc:
            named = exc.filename and Path(exc.filename) not in (self.root, probe)
            what = f"{exc.filename}: " if named else ""
            raise EventLogUnwritableError(
                f"the event log folder {self.root} cannot be written ({what}{exc.strerror or exc}); "
                "set RECOMMNDR_EVENT_LOG_DIR (event_log_dir) to a writable folder"
            ) from exc

    def status(self) -> dict[str, Any]:
        """For ``/ready``: where accepted events go."""
        return {"sink": "log"}

    async def start(self) -> None:
        await asyncio.to_thread(self.prepare)
        self._stopping = False
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Write what is pending, answer it, then stop the writer."""
        if self._task is None or self._wake is None:
            return
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        await task
        while self._pending:  # appended while the writer was finishing
            await self._flush()
        self._wake = None

    async def append(self, events: list[EventIn]) -> list[str]:
        """Store the events durably; returns their ids. Raises ``OSError`` when they were not
        stored (none of them is then in the log, unless the process dies while cutting them off)."""
        ids, lines = event_records(events, self._clock())
        await self.append_lines(lines)
        return ids

    async def append_lines(self, lines: list[str]) -> None:
        """Store already serialised records (one JSON object each, no newline) durably, as
        ``append`` does; the producer's spool keeps its records this way, byte for byte."""
        if self._wake is None:
            raise RuntimeError("event log not started")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((lines, fut))
        self._wake.set()
        await fut

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.flush_s and not self._stopping:
                await asyncio.sleep(self.flush_s)  # let concurrent requests join the batch
            await self._flush()
            if self._stopping and not self._pending:
                return

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        data = "".join(line + "\n" for lines, _ in batch for line in lines)
        try:
            await asyncio.to_thread(self._write, data)
        except Exception as exc:  # OSError: the API's 503; anything else is a bug (500), never a hang
            if not isinstance(exc, OSError):
                log.exception("event log write failed unexpectedly")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.written += sum(len(lines) for lines, _ in batch)
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)

    def _write(self, data: str) -> None:
        """Append one batch durably, or raise ``OSError`` having cut it back off the file."""
        payload = data.encode()
        path = self.root / f"events-{self._clock():%Y-%m-%d}.jsonl"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            try:
                # other processes' batches go before or after this one, never inside it (a short
                # write continued by a second os.write is no longer one atomic O_APPEND write)
                fcntl.flock(fd, fcntl.LOCK_EX)
                st = os.fstat(fd)
                if st.st_nlink == 0:  # removed while we waited (a spool's drainer shipped it): anew
                    continue
                size = _repair_tail(fd, path)  # another process may have died mid-write
                try:
                    write_all(fd, payload)
                    os.fsync(fd)
                    # a new file (an empty one may be a recreated name on a reused inode): its name too
                    if size == 0 or self._dir_synced_for != (path.name, st.st_ino):
                        fsync_dir(self.root)
                        self._dir_synced_for = (path.name, st.st_ino)
                except BaseException:
                    _cut_back(fd, size, path)
                    raise
                return
            finally:
                os.close(fd)  # releases the lock
