"""Prometheus metrics of the API, in their own registry (no global state at import).

With several worker processes (``recommndr serve --workers N``), ``serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder: each worker then writes its values there and
``/metrics``, whichever worker answers, reports the sum over all of them (prometheus_client's
multiprocess mode). The per-variant rates are computed at scrape time from those totals.
Process metrics (``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ...) describe
the one process, or, with several workers, each live worker under a ``pid`` label.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def variant_rates(families: Iterable[Metric]) -> GaugeMetricFamily:
    """ctr = views attributed to a variant / lists it served; atc = add-to-carts / views;
    cvr = purchases / views — from the served and events counters' totals."""
    served: dict[str, float] = defaultdict(float)
    events: dict[tuple[str, str], float] = defaultdict(float)
    for fam in families:
        for s in fam.samples:
            if s.name == "recommndr_recommendations_served_total":
                served[s.labels["variant"]] += s.value
            elif s.name == "recommndr_events_total":
                events[(s.labels["event_type"], s.labels["variant"])] += s.value
    rates = GaugeMetricFamily(
        "recommndr_variant_rate",
        "Per variant: ctr = views attributed to the variant / lists it served; atc = add-to-carts / views; "
        "cvr = purchases / views",
        labels=["variant", "rate"],
    )
    for variant in sorted(set(served) | {v for _, v in events} - {"none"}):
        views = events.get(("view", variant), 0.0)
        lists = served.get(variant, 0.0)
        rates.add_metric([variant, "ctr"], views / lists if lists else 0.0)
        rates.add_metric(
            [variant, "atc"], events.get(("add_to_cart", variant), 0.0) / views if views else 0.0
        )
        rates.add_metric([variant, "cvr"], events.get(("purchase", variant), 0.0) / views if views else 0.0)
    return rates


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


class _WorkerProcesses(Collector):
    """Each live worker's process metrics, labelled by pid. prometheus_client has none in
    multiprocess mode (its ProcessCollector reads the answering process only, so a scrape would
    show whichever worker answered); a live worker is one whose ``recommndr_ready`` file is there
    (``mark_process_dead`` removes it when the worker stops)."""

    _LIVE = re.compile(r"gauge_livemin_(\d+)\.db")

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for entry in sorted(self.folder.iterdir()):
            m = self._LIVE.fullmatch(entry.name)
            if m is None:
                continue
            pid = int(m.group(1))
            for fam in ProcessCollector(pid=lambda pid=pid: pid, registry=None).collect():  # type: ignore[misc]
                out = merged.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type, fam.unit))
                for s in fam.samples:
                    out.add_sample(s.name, {**s.labels, "pid": str(pid)}, s.value)
        return iter(merged.values())


class ApiMetrics:
    def __init__(self) -> None:
        # what prometheus_client chose when it was imported (the variable may have been set since:
        # importing feast sets it, for one)
        self.multiprocess = values.ValueClass is not values.MutexValue and bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("recommndr_request_seconds", "Request latency", ["endpoint", "variant"],
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.errors = Counter(
            "recommndr_errors_total", "Responses with status >= 500", ["endpoint"], registry=r
        )
        self.client_errors = Counter(
            "recommndr_client_errors_total", "4xx responses", ["endpoint", "code"], registry=r
        )
        self.served = Counter(
            "recommndr_recommendations_served_total", "Lists served", ["variant", "path"], registry=r
        )
        self.events = Counter(
            "recommndr_events_total", "Events accepted", ["event_type", "variant"], registry=r
        )
        # across workers: a version is loaded if any live worker has it; ready when all are
        self.model_info = Gauge("recommndr_model_info", "Loaded model versions (value 1)", ["variant", "version"],
                                registry=r, multiprocess_mode="livemax")  # fmt: skip
        self.ready = Gauge(
            "recommndr_ready", "1 when models are loaded", registry=r, multiprocess_mode="livemin"
        )
        self.degraded = Counter(
            "recommndr_degraded_total", "Responses served by a fallback", ["reason"], registry=r
        )
        self._source: Collector = r
        if self.multiprocess:
            from prometheus_client import multiprocess

            self._source = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._source)  # type: ignore[no-untyped-call]
            self._source.register(_WorkerProcesses(Path(os.environ[MULTIPROC_ENV])))
        else:
            ProcessCollector(registry=r)

    def render(self) -> bytes:
        """The exposition text: every metric (summed over the workers in multiprocess mode) and
        the per-variant rates."""
        families = list(self._source.collect())
        return generate_latest(_Families([*families, variant_rates(families)]))

    def close(self) -> None:
        """This worker is ending: drop its live gauges (multiprocess mode)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
