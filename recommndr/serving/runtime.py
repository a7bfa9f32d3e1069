"""What one API process holds while it serves: the model slots, the traffic split, the operator's
control state, the audit trail, the retrain it started, the event sink (the local log, or the
broker with its spool), the online features, the streaming job's product windows (a snapshot,
``stream``), metrics, the alert inbox and the recommendation thread pool; started and stopped by
the app's lifespan, with the background tasks that follow the model source, the shared split, the
shared control state and the product windows."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from recommndr.config import Settings
from recommndr.errors import RecommndrError
from recommndr.features.online import OnlineFeatures, open_online_store
from recommndr.lifecycle.audit import AuditTrail
from recommndr.monitoring.watch import DriftGauges
from recommndr.monitoring.window import LiveWindow
from recommndr.ranking.features import FEATURES
from recommndr.serving.alerts import AlertInbox
from recommndr.serving.control import ControlState
from recommndr.serving.events import EventLog, event_records
from recommndr.serving.faults import Fault
from recommndr.serving.metrics import ApiMetrics
from recommndr.serving.model import ServingModel
from recommndr.serving.retrain import RetrainRunner
from recommndr.serving.slots import ModelSlots
from recommndr.serving.sources import FolderSource, ModelSource, RegistrySource, StoreSource
from recommndr.serving.stream import StreamFeed
from recommndr.serving.traffic import TrafficSplit
from recommndr.streaming.producer import BrokerProducer, ProducerMetrics

log = logging.getLogger(__name__)
PROCESS_SAMPLE_S = 1.0  # how stale another worker's RSS and CPU seconds may be in a scrape


def model_source(settings: Settings, artifacts: Path | None = None) -> ModelSource:
    """Where the champion and challenger come from: an explicit folder, the MLflow registry, the
    blob store, or the configured folder."""
    if artifacts is not None:
        return FolderSource(artifacts, settings.challenger_artifacts_dir)
    if settings.registry_uri:
        return RegistrySource(settings.registry_uri, settings.registry_model, settings.artifact_cache_dir)
    if settings.blob_connection_string and settings.artifact_name:
        from recommndr.registry.store import BlobStore

        store = BlobStore(settings.blob_connection_string, settings.blob_container)
        return StoreSource(store, settings.artifact_name, settings.challenger_artifact_name,
                           settings.artifact_cache_dir)  # fmt: skip
    return FolderSource(settings.artifacts_dir, settings.challenger_artifacts_dir)


def event_sink(
    settings: Settings, metrics: ApiMetrics, event_dir: Path | None = None
) -> EventLog | BrokerProducer:
    """Where POST /events puts what it accepts: the local log, or with ``event_broker`` set the
    broker, backed by a durable spool (an event log in ``event_spool_dir``)."""
    if not settings.event_broker:
        return EventLog(event_dir or settings.event_log_dir, settings.event_flush_ms)
    spool = EventLog(
        settings.event_spool_dir or (event_dir or settings.event_log_dir) / "spool", settings.event_flush_ms
    )
    m = metrics
    return BrokerProducer(
        settings,
        spool,
        ProducerMetrics(m.events_produced, m.events_spooled, m.events_drained, m.spool_backlog, m.broker_up),
        event_records,
    )


class ServingState:
    def __init__(
        self, settings: Settings, artifacts: Path | None = None, event_dir: Path | None = None
    ) -> None:
        self.settings = settings
        self.metrics = ApiMetrics()
        self.traffic = TrafficSplit(settings.traffic_file)
        self.slots = ModelSlots(
            lambda: model_source(settings, artifacts), self.traffic, self.metrics, settings.challenger_traffic
        )
        self.events: EventLog | BrokerProducer = event_sink(settings, self.metrics, event_dir)
        # the events this process accepted and refused, for the drift check (bounded)
        self.event_window = LiveWindow(FEATURES)
        self.drift_gauges: DriftGauges | None = None  # made by the first in-process check (drift_check.py)
        self.online: OnlineFeatures | None = None
        # the streaming job's product windows, beside the online store (a snapshot in memory)
        self.stream = StreamFeed(settings, self.metrics)
        self.pool: ThreadPoolExecutor | None = None
        self.alerts = AlertInbox(settings.alert_inbox_path, settings.alert_inbox_size)
        self.control = ControlState(settings.control_file)
        self.audit = AuditTrail(settings.audit_path)
        self.retrain = RetrainRunner(settings)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def model(self) -> ServingModel | None:
        """The champion (None until one is loaded)."""
        return self.slots.champion

    async def start(self) -> None:
        """Open the event log first (a folder it cannot write fails the start at once: a 202
        must mean stored), then load the models, the online store and the shared split."""
        slots, settings = self.slots, self.settings
        await self.events.start()
        try:
            await asyncio.to_thread(slots.refresh_champion, True)
        except RecommndrError as exc:
            slots.not_ready = str(exc)
            log.error("no model loaded: %s", exc)
        except Exception as exc:  # the store unreachable, say: not ready, and why
            slots.not_ready = f"{type(exc).__name__}: {exc}"
            log.exception("no model loaded")
        if slots.champion is not None:
            try:
                await asyncio.to_thread(slots.refresh_challenger)
            except Exception as exc:
                log.error("challenger not loaded (the champion serves everyone): %s", exc)
        if settings.online_store != "off":
            try:
                store = open_online_store(
                    settings.online_store,
                    settings.online_store_path,
                    settings.redis_url,
                    settings.online_timeout_ms / 1000,
                )
                self.online = OnlineFeatures(store) if store is not None else None
            except Exception as exc:  # e.g. an unwritable path: serve batch features only
                log.error("online store %s not opened: %s", settings.online_store, exc)
            if self.online is not None:  # the write-through's count, for the consistency metric
                self.online.observers.append(self.stream.record)
        await self.stream.start()  # a store it cannot read only marks the stream down
        self.traffic.sync(slots.challenger is not None)
        self.sync_control()
        if settings.recommend_threads > 0:
            self.pool = ThreadPoolExecutor(settings.recommend_threads, thread_name_prefix="recommend")
        if settings.reload_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._watch()))
        self._tasks.append(asyncio.create_task(self._sync_split()))
        if self.metrics.multiprocess:  # a scrape reaches one worker: the others keep their share fresh
            self._tasks.append(asyncio.create_task(self._sample_process()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        await asyncio.to_thread(self.retrain.stop)  # a retrain this worker started ends with it
        await self.events.stop()
        await self.stream.stop()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.online is not None:
            self.online.close()
        self.alerts.close()
        self.metrics.close()

    async def _sync_split(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.traffic.sync(self.slots.challenger is not None)
            self.sync_control()

    def sync_control(self) -> None:
        """Re-read the shared control state if it changed and apply its fault."""
        self.control.sync()
        self.apply_fault()

    def apply_fault(self) -> None:
        """The control state's fault, into the challenger (ModelSlots.set_fault) — only with
        fault injection on: a production API ignores a fault the file may hold."""
        f = self.control.state["fault"]
        current = self.slots.fault
        if not self.settings.fault_injection or f is None or f["kind"] == "none":
            if current is not None:
                self.slots.set_fault(None)
            return
        if current is not None and current.key == (f["kind"], f["since"], f["version"]):
            return  # the same fault: keep it (and its count of requests)
        s = self.settings
        self.slots.set_fault(Fault(f["kind"], f["since"], f["version"], s.fault_error_rate, s.fault_delay_s))

    async def record(
        self, action: str, by: str, reason: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Append an audit entry (off the event loop: it waits for a lock and an fsync) and
        return it; None, logged, when the trail cannot be written (the action stands)."""
        try:
            return await asyncio.to_thread(self.audit.append, action, by, reason, details)
        except (OSError, ValueError, RecommndrError) as exc:
            log.error("audit entry %r by %s not recorded in %s: %s", action, by, self.audit.path, exc)
            return None

    async def _sample_process(self) -> None:
        while True:
            self.metrics.sample_process()
            await asyncio.sleep(PROCESS_SAMPLE_S)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            for refresh in (self.slots.refresh_champion, self.slots.refresh_challenger):
                try:
                    await asyncio.to_thread(refresh)
                except RecommndrError as exc:  # no champion yet, a refused bundle: said, no stack
                    log.error(
                        "new %s not loaded (%s); the current one keeps serving", refresh.__name__[8:], exc
                    )
                except Exception:  # a half-written bundle, an unreachable store: keep serving the current one
                    log.exception("new %s not loaded; the current one keeps serving", refresh.__name__[8:])
