"""Prometheus metrics of the API, in their own registry (no global state at import).

With several worker processes (``recommndr serve --workers N``), ``serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder: each worker then writes its values there and
``/metrics``, whichever worker answers, reports the sum over all of them (prometheus_client's
multiprocess mode). The per-variant rates are computed at scrape time from those totals.

The process metrics (``process_resident_memory_bytes``, ``process_cpu_seconds_total``) are the
API's, not one worker's: each worker samples itself (at every render, and every second from a
background task in multiprocess mode) into a live-sum gauge and a counter, so the rendered RSS is
the sum over the live workers (a worker that ended cleanly drops out; shared pages, such as the
memory-mapped bundle, count once per worker, as RSS does) and the CPU counter keeps the seconds of
workers that have ended (it never goes down when one is replaced, which ``rate()`` would read as a
reset). prometheus_client's own ``ProcessCollector`` reports only the process that answers.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# 0.3 s is the latency alert's threshold (infra/monitoring/rules/alerts.yml): with a bucket edge there,
# "p95 > 300 ms" is "more than 5 % of requests took over 0.3 s", not an interpolation in (0.25, 1]
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# the alert names of infra/monitoring/rules/alerts.yml (a test keeps the two equal): a received
# alert is counted under its name only if it is one of these, so a sender cannot grow the label set
ALERT_NAMES = frozenset({
    "RecommndrLatencyP95High", "RecommndrErrorRateHigh", "RecommndrCtrBelowChampion",
    "RecommndrCtrBelowTrailingDay", "RecommndrConversionBelowChampion",
    "RecommndrConversionBelowTrailingDay", "RecommndrFeatureDrift", "RecommndrScoreDrift",
    "RecommndrConfidenceDrop", "RecommndrValidationFailureSpike", "RecommndrEventsRejectedSpike",
    "RecommndrDriftCheckStale", "RecommndrMemoryHigh", "RecommndrMemoryGrowth", "RecommndrCpuSaturated",
    "RecommndrCpuPerRequestGrowth",
    "RecommndrTargetDown", "RecommndrTrendingServesBatch",
})  # fmt: skip
SEVERITIES = frozenset({"critical", "warning", "info"})
RECOMMEND_ENDPOINT = "/recommendations/{user_id}"  # the route whose answers are counted per variant
COUNTERS = ("lists", "views", "carts", "purchases", "requests", "errors")
_EVENT_COUNTER = {"view": "views", "add_to_cart": "carts", "purchase": "purchases"}


def resident_bytes() -> float | None:
    """This process' resident set size, from ``/proc/self/statm`` (Linux; None elsewhere)."""
    try:
        return float(int(Path("/proc/self/statm").read_bytes().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return None


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


def variant_counts(families: Iterable[Metric], variants: Iterable[str]) -> dict[str, dict[str, float]]:
    """Per variant, the totals the canary compares: lists served, the views, add-to-carts and
    purchases attributed to it, ``/recommendations`` requests (the latency histogram's count) and
    their 5xx answers — from the same families ``/metrics`` renders (summed over the workers)."""
    out = {v: dict.fromkeys(COUNTERS, 0.0) for v in variants}
    for fam in families:
        for s in fam.samples:
            c = out.get(s.labels.get("variant", ""))
            if c is None:
                continue
            if s.name == "recommndr_recommendations_served_total":
                c["lists"] += s.value
            elif s.name == "recommndr_events_total" and s.labels.get("event_type") in _EVENT_COUNTER:
                c[_EVENT_COUNTER[s.labels["event_type"]]] += s.value
            elif (
                s.name == "recommndr_request_seconds_count" and s.labels.get("endpoint") == RECOMMEND_ENDPOINT
            ):
                c["requests"] += s.value
            elif s.name == "recommndr_variant_errors_total":
                c["errors"] += s.value
    return out


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


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
        self.variant_errors = Counter(
            "recommndr_variant_errors_total",
            f"5xx answers of {RECOMMEND_ENDPOINT} per variant (the canary's error-rate guard)",
            ["variant"],
            registry=r,
        )
        self.client_errors = Counter(
            "recommndr_client_errors_total", "4xx responses", ["endpoint", "code"], registry=r
        )
        self.served = Counter(
            "recommndr_recommendations_served_total", "Lists served", ["variant", "path"], registry=r
        )
        # products shown in those lists: the canary's trials (each a view or not, a purchase or not)
        self.impressions = Counter(
            "recommndr_impressions_total", "Products shown in served lists", ["variant"], registry=r
        )
        # the same per shopper bucket: the canary's variance counts shoppers, not products, as the
        # units assigned (a shopper's products are alike); 32 buckets x 2 variants x 3 kinds of series
        self.canary_bucket = Counter(
            "recommndr_canary_bucket_total",
            "Products shown, views and purchases of them, per variant and shopper bucket",
            ["variant", "bucket", "kind"],
            registry=r,
        )
        self.events = Counter(
            "recommndr_events_total", "Events accepted", ["event_type", "variant"], registry=r
        )
        self.events_rejected = Counter(
            "recommndr_events_rejected_total",
            "Events refused by validation (each event of a refused batch that failed; 1 for a body that is not events)",
            registry=r,
        )
        # the producer (event_broker set; recommndr/streaming/producer.py)
        self.events_produced = Counter(
            "recommndr_events_produced_total",
            "Events the broker confirmed (acks=all) while their request waited",
            registry=r,
        )
        self.events_spooled = Counter(
            "recommndr_events_spooled_total",
            "Events written to the durable spool (broker down, slow or failing) before their 202",
            registry=r,
        )
        self.events_drained = Counter(
            "recommndr_events_drained_total", "Spooled events the drainer shipped to the broker", registry=r
        )
        self.spool_backlog = Gauge(
            "recommndr_event_spool_backlog",
            "Spooled events not yet shipped to the broker (set by the worker that drains the spool)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.broker_up = Gauge(
            "recommndr_event_broker_up",
            "1 while the event broker confirms, 0 while events go to the spool (the breaker open); "
            "0 too when no broker is configured",
            registry=r,
            multiprocess_mode="livemin",
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
        self.alerts = Counter(
            "recommndr_alerts_received_total",
            "Alerts received on the webhook (alertname 'other' for a name the rules do not define)",
            ["alertname", "status", "severity"],
            registry=r,
        )
        # the streaming job's product windows as this API reads them (serving/stream.py)
        self.stream_live = Gauge(
            "recommndr_stream_live",
            "1 while the streaming job's windows are fresh and /trending serves them, 0 while it serves the batch lists",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.stream_age = Gauge(
            "recommndr_stream_status_age_seconds",
            "Seconds since the streaming job last wrote its status (+Inf: no status seen)",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.stream_products = Gauge(
            "recommndr_stream_snapshot_products",
            "Trending products in the API's snapshot of the product windows",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.stream_consistency = Gauge(
            "recommndr_stream_consistency_ratio",
            "The job's last-hour events / this worker's accepted events, over the snapshot's products both "
            "counted (1 = agree; about N with N workers, each seeing its share; NaN: nothing to compare)",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.session_agreement = Gauge(
            "recommndr_stream_session_agreement_ratio",
            "Share of recently active shoppers whose job-computed session products equal the newest of "
            "their write-through recent products (compared where both saw the same newest event; NaN: none)",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.sessions_compared = Gauge(
            "recommndr_stream_sessions_compared",
            "Shoppers in the last session-agreement comparison",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.rss = Gauge("process_resident_memory_bytes", "Resident memory of the API: the sum over its live "
                         "worker processes", registry=r, multiprocess_mode="livesum")  # fmt: skip
        self.cpu = Counter("process_cpu_seconds", "User and system CPU time of the API's worker processes, "
                           "those that have ended included", registry=r)  # fmt: skip
        self.workers = Gauge("recommndr_worker_processes", "Live worker processes of the API", registry=r,
                             multiprocess_mode="livesum")  # fmt: skip
        self.workers.set(1)
        self._cpu_counted = 0.0
        self._sample_lock = threading.Lock()
        self._source: Collector = r
        if self.multiprocess:
            from prometheus_client import multiprocess

            self._source = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._source)  # type: ignore[no-untyped-call]

    def sample_process(self) -> None:
        """Add this process' CPU seconds since the last sample to the counter and set its RSS."""
        with self._sample_lock:  # render (event loop) and the sampling task may overlap
            cpu = time.process_time()
            self.cpu.inc(max(0.0, cpu - self._cpu_counted))
            self._cpu_counted = max(cpu, self._cpu_counted)
        rss = resident_bytes()
        if rss is not None:
            self.rss.set(rss)

    def count_alert(self, alertname: str | None, status: str, severity: str | None) -> None:
        """One alert received on the webhook; names and severities outside the rules' are 'other'."""
        name = alertname if alertname in ALERT_NAMES else "other"
        self.alerts.labels(name, status, severity if severity in SEVERITIES else "other").inc()

    def render(self) -> bytes:
        """The exposition text: every metric (summed over the workers in multiprocess mode) and
        the per-variant rates."""
        self.sample_process()
        families = self.families()
        return generate_latest(_Families([*families, variant_rates(families)]))

    def families(self) -> list[Metric]:
        """Every metric family as ``/metrics`` reports it (summed over the workers in
        multiprocess mode)."""
        return list(self._source.collect())

    def close(self) -> None:
        """This worker is ending: drop its live gauges (multiprocess mode)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
