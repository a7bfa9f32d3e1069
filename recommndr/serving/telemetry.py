"""Export to Azure Monitor (Application Insights) when ``APPLICATIONINSIGHTS_CONNECTION_STRING``
is set: ``azure-monitor-opentelemetry``'s ``configure_azure_monitor`` sets up OpenTelemetry's
traces (requests through its FastAPI instrumentation), logs (the ``recommndr`` loggers) and
metrics, and the API's Prometheus metrics are bridged to OpenTelemetry under the same names.
(The design card names OpenCensus: its Azure exporters are retired upstream, in favour of this
OpenTelemetry distro.) Nothing here is imported unless the variable is set (cold start: the
distro and its instrumentations take a while to import).

The bridge reads this process's own Prometheus registry when OpenTelemetry collects (every 60 s
for the Azure exporter): each exposition series becomes an instrument of the same name — a
counter's ``name_total``, a histogram's ``name_bucket`` (with ``le``), ``name_count`` and
``name_sum`` as observable counters of their cumulative values; a gauge as an observable gauge
— so a query written for Prometheus finds the same names in Application Insights' customMetrics.
Each process (worker) exports its own values; Azure Monitor adds them up.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from recommndr.serving.metrics import ApiMetrics, variant_rates

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

log = logging.getLogger(__name__)
CONNECTION_ENV = "APPLICATIONINSIGHTS_CONNECTION_STRING"
_enabled: list[ApiMetrics] = []  # configure_azure_monitor sets process-wide providers: once


def enable_azure_monitor(metrics: ApiMetrics, connection_string: str) -> bool:
    """Configure the Azure Monitor distro and bridge ``metrics``; False (and a warning) when this
    process already exports another app's metrics."""
    if _enabled:
        log.warning(
            "Azure Monitor is already configured in this process; a second app's metrics are not exported"
        )
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry import metrics as otel_metrics

    configure_azure_monitor(connection_string=connection_string, logger_name="recommndr")
    names = bridge(metrics, otel_metrics.get_meter("recommndr"))
    _enabled.append(metrics)
    log.info("exporting to Azure Monitor: %d metrics", len(names))
    return True


def _series(metrics: ApiMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """This process's exposition series by name, with the per-variant rates."""
    families = list(metrics.registry.collect())
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in [*families, variant_rates(families)]:
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def _sample_names(metrics: ApiMetrics) -> list[tuple[str, str]]:
    """(series name, 'counter' | 'gauge') of every series the registry exposes, samples or not."""
    names: list[tuple[str, str]] = []
    families = list(metrics.registry.collect())
    for fam in [*families, variant_rates(families)]:
        if fam.type == "counter":
            names.append((f"{fam.name}_total", "counter"))
        elif fam.type == "histogram":
            names += [(f"{fam.name}_{part}", "counter") for part in ("bucket", "count", "sum")]
        else:  # gauge (and untyped): the value as it is now
            names.append((fam.name, "gauge"))
    return names


def bridge(metrics: ApiMetrics, meter: Meter) -> list[str]:
    """One observable instrument per exposition series name; returns the names."""
    from opentelemetry.metrics import Observation

    def observe(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            # Azure Monitor takes finite numbers only: a gauge at +Inf or NaN (the stream's status age
            # before any status, a ratio with nothing to compare) is left out until it has a value
            return [
                Observation(v, labels) for labels, v in _series(metrics).get(name, []) if math.isfinite(v)
            ]

        return callback

    created: list[str] = []
    for name, kind in _sample_names(metrics):
        make: Any = meter.create_observable_counter if kind == "counter" else meter.create_observable_gauge
        make(name, callbacks=[observe(name)], description=f"Prometheus series {name}")
        created.append(name)
    return created
