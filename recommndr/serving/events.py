"""``POST /events``: the event schema and a durable, append-only local log with group commit.

A 202 means the events are on disk: each request's lines join a batch that one writer appends and
fsyncs (every ``flush_ms`` or sooner when idle), then every request of the batch is answered. The
log is one JSON-lines file per UTC day under ``event_log_dir``; the streaming issue adds the
broker behind the same interface.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EventIn(BaseModel):
    """One shopper event, as the storefront sends it."""

    model_config = ConfigDict(extra="forbid")

    user_id: int = Field(ge=0)
    item_id: int = Field(ge=0)
    event_type: Literal["view", "add_to_cart", "purchase"]
    ts: datetime | None = Field(None, description="when it happened (UTC); default: when received")
    session_id: int | None = Field(None, ge=0)
    price: float | None = Field(None, gt=0)
    quantity: int = Field(1, ge=1, le=10_000)
    event_id: str | None = Field(None, min_length=1, max_length=128)
    variant: str | None = Field(None, max_length=64, description="the A/B variant that served the list")
    model_version: str | None = Field(None, max_length=64)

    @field_validator("ts")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


class EventLog:
    """Append-only JSON-lines log with group commit (write + fsync once per batch)."""

    def __init__(self, root: Path, flush_ms: float = 5.0) -> None:
        self.root = Path(root)
        self.flush_s = flush_ms / 1000.0
        self._pending: list[tuple[list[str], asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await self._flush()
            self._task.cancel()
            self._task = None

    async def append(self, events: list[EventIn]) -> list[str]:
        """Store the events durably; returns their ids."""
        if self._wake is None:
            raise RuntimeError("event log not started")
        now = datetime.now(UTC)
        ids, lines = [], []
        for e in events:
            eid = e.event_id or uuid.uuid4().hex
            ids.append(eid)
            rec = e.model_dump(mode="json")
            rec["event_id"] = eid
            rec["ts"] = (e.ts or now).isoformat()
            rec["received_at"] = now.isoformat()
            lines.append(json.dumps(rec, separators=(",", ":")))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((lines, fut))
        self._wake.set()
        await fut
        return ids

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.flush_s:
                await asyncio.sleep(self.flush_s)  # let concurrent requests join the batch
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        data = "".join(line + "\n" for lines, _ in batch for line in lines)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.written += sum(len(lines) for lines, _ in batch)
        for _, fut in batch:
            if not fut.done():
                fut.set_result(None)

    def _write(self, data: str) -> None:
        path = self.root / f"events-{datetime.now(UTC):%Y-%m-%d}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, data.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
