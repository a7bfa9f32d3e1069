"""The Grafana dashboards, as code (grafana-foundation-sdk): ``recommndr monitor dashboards``
writes them to ``infra/monitoring/dashboards/`` and a test checks that the committed JSON is what
this module writes, so nobody edits the JSON by hand.

Two dashboards, both on a Prometheus datasource chosen by the ``datasource`` variable:

- ``recommndr-api``: latency percentiles per endpoint and variant, error rates, requests and
  lists served per variant, CTR / add-to-cart / conversion per variant with 95 % Wilson score
  intervals, the API's cumulative rates, model versions, the observed traffic split, readiness,
  degradations, the streaming job (lag, throughput, freshness, whether trending is live, the
  consistency of its counts with the API's), and each worker's memory and CPU;
- ``recommndr-drift``: what the drift watcher (``recommndr monitor watch``) exports — PSI per
  feature, the drift flags, score PSI, confidence drop, the validation-failure share, the age of
  the last check and the window sizes.

Every expression reads raw metrics (the names of the API's ``/metrics`` and the watcher's), never
recording-rule names, so the dashboards work against any Prometheus that scrapes the two jobs.
Process metrics are selected by the scrape job ``recommndr-api`` (other jobs expose the same names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    IntervalVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphTresholdsStyleMode
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

API_JOB = "recommndr-api"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# What a template variable stands for when the check or the renderer queries Prometheus itself:
# "All" is the regular expression Grafana sends for it (allValue), the window the default option.
RATE_INTERVAL = "$__rate_interval"
Z = 1.959963984540054  # two-sided 95 %


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, as the JSON holds it."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    legend: str
    instant: bool


def _target(expr: str, legend: str, ref: str, instant: bool = False) -> Dataquery:
    q = Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    return q.instant() if instant else q.range()


def _series(
    title: str, description: str, unit: str, targets: list[tuple[str, str]], *, width: int = 12
) -> timeseries.Panel:
    panel = (
        timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
        .height(8).span(width).fill_opacity(0).line_width(1)
    )  # fmt: skip
    for i, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_target(expr, legend, chr(ord("A") + i)))
    return panel


def _thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    return ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps([Threshold(v, c) for v, c in steps])


# --- the API ------------------------------------------------------------------------------------

_SEL = 'endpoint=~"$endpoint", variant=~"$variant"'


def _latency(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (le, endpoint, variant) "
        f"(rate(recommndr_request_seconds_bucket{{{_SEL}}}[{RATE_INTERVAL}])))"
    )


def _window_sum(metric: str, selector: str) -> str:
    return f"sum by (variant) (increase({metric}{{{selector}}}[$window]))"


def _rate_with_interval(successes: str, trials: str) -> list[tuple[str, str]]:
    """The share successes / trials per variant over ``$window`` and its 95 % Wilson score
    interval: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n). Trials with no count in the
    window are dropped (no share to show); a variant with trials and no success shows 0. The share
    is capped at 1: a list can be clicked more than once, so CTR per list can pass 1 (the cumulative
    panel shows the uncapped ratio), and the binomial interval is then only an approximation."""
    n = f"({trials} > 0)"
    p = f"clamp_max(({successes} or 0 * {n}) / {n}, 1)"
    z2 = Z * Z
    centre = f"({p} + {z2 / 2:.10g} / {n})"
    half = f"{Z:.10g} * sqrt({p} * (1 - {p}) / {n} + {z2 / 4:.10g} / ({n} * {n}))"
    scale = f"(1 + {z2:.10g} / {n})"
    return [
        (p, "{{variant}}"),
        (f"({centre} - {half}) / {scale}", "{{variant}} low"),
        (f"({centre} + {half}) / {scale}", "{{variant}} high"),
    ]


def _shopper_rates() -> list[timeseries.Panel]:
    lists = _window_sum("recommndr_recommendations_served_total", 'variant=~"$variant"')

    def events(kind: str) -> str:
        return _window_sum(
            "recommndr_events_total", f'event_type="{kind}", variant=~"$variant", variant!="none"'
        )

    panels = []
    for title, ok, trials, what in (
        ("CTR per variant (95 % Wilson interval)", events("view"), lists, "views from a list / lists served"),
        ("Add-to-cart rate per variant (95 % interval)", events("add_to_cart"), events("view"),
         "add-to-carts from a list / views from a list"),
        ("Conversion per variant (95 % interval)", events("purchase"), events("view"),
         "purchases from a list / views from a list"),
    ):  # fmt: skip
        panel = _series(
            title,
            f"{what} over the window variable ($window), with its 95 % Wilson score interval "
            "(dashed). Events not from a served list (variant none) are left out.",
            "percentunit",
            _rate_with_interval(ok, trials),
            width=8,
        )
        panels.append(
            panel.override_by_regexp(".* (low|high)$", [DynamicConfigValue("custom.lineStyle",
                                                                             {"fill": "dash", "dash": [6, 4]})])
        )  # fmt: skip
    return panels


def api_dashboard() -> Dashboard:
    served = "recommndr_recommendations_served_total"
    requests = f"rate(recommndr_request_seconds_count{{{_SEL}}}[{RATE_INTERVAL}])"
    by_endpoint = (
        f'sum by (endpoint) (rate(recommndr_request_seconds_count{{endpoint=~"$endpoint"}}[{RATE_INTERVAL}]))'
    )
    d = (
        Dashboard("Recommndr API")
        .uid("recommndr-api")
        .description("Latency, errors, traffic per variant, shopper response with intervals, models, degradations.")
        .tags(["recommndr", "generated"])
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            QueryVariable("endpoint").label("Endpoint").datasource(DATASOURCE)
            .query("label_values(recommndr_request_seconds_count, endpoint)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True).all_value(".*")
            .current(VariableOption(text="All", value="$__all"))
        )
        .with_variable(
            QueryVariable("variant").label("Variant").datasource(DATASOURCE)
            .query("label_values(recommndr_request_seconds_count, variant)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True).all_value(".*")
            .current(VariableOption(text="All", value="$__all"))
        )
        .with_variable(
            IntervalVariable("window").label("Rate window").values("15m,1h,6h,1d")
            .current(VariableOption(text="1h", value="1h"))
        )
        .with_row(Row("Latency and errors"))
    )  # fmt: skip
    for q, width in ((0.5, 8), (0.95, 8), (0.99, 8)):
        name = f"p{round(q * 100)}"
        panel = _series(
            f"Latency {name} per endpoint and variant",
            f"The {name} of request latency from the histogram's buckets (0.5 ms ... 1 s): an estimate "
            "within the bucket it falls in; above 1 s it reads 1 s.",
            "s",
            [(_latency(q), "{{endpoint}} {{variant}}")],
            width=width,
        )
        if q == 0.95:  # the alert's line: p95 above 300 ms for 5 minutes
            panel = panel.thresholds(_thresholds((None, "green"), (0.3, "red"))).thresholds_style(
                common.GraphThresholdsStyleConfig().mode(GraphTresholdsStyleMode.LINE)
            )  # fmt: skip
        d = d.with_panel(panel)
    d = d.with_panel(
        _series(
            "Error rate (5xx share) per endpoint",
            "Responses with status >= 500 / all responses, per endpoint; 0 while there are none.",
            "percentunit",
            [
                (
                    f'(sum by (endpoint) (rate(recommndr_errors_total{{endpoint=~"$endpoint"}}[{RATE_INTERVAL}])) '
                    f"or 0 * {by_endpoint}) / ({by_endpoint} > 0)",
                    "{{endpoint}}",
                )
            ],
            width=8,
        )
    )
    d = d.with_panel(
        _series(
            "Client errors (4xx) per endpoint and status",
            "The caller's mistakes per second: unknown products (404), invalid input (422), bodies over the limit (413).",
            "reqps",
            [
                (
                    f'sum by (endpoint, code) (rate(recommndr_client_errors_total{{endpoint=~"$endpoint"}}[{RATE_INTERVAL}]))',
                    "{{endpoint}} {{code}}",
                )
            ],
            width=8,
        )
    )
    d = d.with_panel(
        _series(
            "Requests per variant",
            "Requests per second by the variant that answered them (champion when none was picked).",
            "reqps",
            [(f"sum by (variant) ({requests})", "{{variant}}")],
            width=8,
        )
    )
    d = d.with_row(Row("Recommendations and shopper response"))
    d = d.with_panel(
        _series(
            "Lists served per variant and path",
            "Recommendation lists per second: two_stage (ranked) or cold_start (popularity for an unknown shopper).",
            "reqps",
            [
                (
                    f'sum by (variant, path) (rate({served}{{variant=~"$variant"}}[{RATE_INTERVAL}]))',
                    "{{variant}} {{path}}",
                )
            ],
        )
    )
    d = d.with_panel(
        _series(
            "Events accepted per type and variant",
            "Accepted events per second; variant none: an event not from a served list (shown under All).",
            "reqps",
            [
                (
                    f'sum by (event_type, variant) (rate(recommndr_events_total{{variant=~"$variant"}}[{RATE_INTERVAL}]))',
                    "{{event_type}} {{variant}}",
                )
            ],
        )
    )
    for panel in _shopper_rates():
        d = d.with_panel(panel)
    d = d.with_row(Row("Models and traffic"))
    d = d.with_panel(
        table.Panel().title("Model versions loaded").datasource(DATASOURCE).height(6).span(8)
        .description("One row per loaded version and its slot (champion, challenger), from recommndr_model_info.")
        .with_target(_target("max by (variant, version) (recommndr_model_info) == 1", "{{variant}} {{version}}",
                             "A", instant=True).format(PromQueryFormat.TABLE))
    )  # fmt: skip
    d = d.with_panel(
        _series(
            "Traffic split (share of lists per variant)",
            "The observed split: each variant's lists / all lists. The configured split is GET /models.",
            "percentunit",
            [
                (
                    f"sum by (variant) (rate({served}[{RATE_INTERVAL}])) / ignoring (variant) group_left "
                    f"sum(rate({served}[{RATE_INTERVAL}]))",
                    "{{variant}}",
                )
            ],
            width=8,
        )
    )
    d = d.with_panel(
        stat.Panel().title("Ready").datasource(DATASOURCE).height(6).span(8)
        .description("1 when every worker has its models loaded (recommndr_ready, the minimum over workers).")
        .thresholds(_thresholds((None, "red"), (1, "green")))
        .with_target(_target("min(recommndr_ready)", "ready", "A"))
    )  # fmt: skip
    d = d.with_panel(
        _series(
            "Degradations per reason",
            "Answers served by a fallback per second: ranker_unavailable (popularity order), "
            "online_features_unavailable (batch features only).",
            "reqps",
            [(f"sum by (reason) (rate(recommndr_degraded_total[{RATE_INTERVAL}]))", "{{reason}}")],
        )
    )
    d = d.with_panel(
        _series(
            "Cumulative rates per variant (API totals)",
            "recommndr_variant_rate: ctr, atc and cvr from the API's totals since it started (no interval: "
            "see the panels above for windowed rates with intervals).",
            "percentunit",
            [
                (
                    'max by (variant, rate) (recommndr_variant_rate{variant=~"$variant"})',
                    "{{variant}} {{rate}}",
                )
            ],
        )
    )
    d = _stream_row(d)
    d = d.with_row(Row("Process"))
    d = d.with_panel(
        _series(
            "API memory (RSS)",
            "Resident memory of the API: the sum over its live worker processes (a memory-mapped "
            "bundle counts once per worker, as RSS does).",
            "bytes",
            [(f'process_resident_memory_bytes{{job="{API_JOB}"}}', "{{instance}}")],
        )
    )
    return d.with_panel(
        _series(
            "API CPU",
            "CPU seconds per second of the API's worker processes together (1 = one core).",
            "percentunit",
            [
                (
                    f'rate(process_cpu_seconds_total{{job="{API_JOB}"}}[{RATE_INTERVAL}])',
                    "{{instance}}",
                )
            ],
        )
    )


def _stream_row(d: Dashboard) -> Dashboard:
    """The streaming job (its exporter's ``recommndr_stream_*`` names: clock lag, Kafka lag,
    records in) and the API's view of it (``serving/stream.py``: freshness, live, consistency)."""
    d = d.with_row(Row("Streaming"))
    d = d.with_panel(
        _series(
            "Stream lag",
            "How far the job's clock (event time) is behind wall time, per job instance.",
            "s",
            [("max by (instance) (recommndr_stream_clock_lag_seconds)", "{{instance}}")],
            width=8,
        )
    )
    d = d.with_panel(
        _series(
            "Kafka lag (records)",
            "Records in the topic the job has not consumed yet (all partitions).",
            "short",
            [("sum(recommndr_stream_kafka_lag_records)", "records")],
            width=8,
        )
    )
    d = d.with_panel(
        _series(
            "Stream throughput",
            "Records per second the job reads from the topic.",
            "reqps",
            [("sum(rate(recommndr_stream_records_in_total[1m]))", "records/s")],
            width=8,
        )
    )
    d = d.with_panel(
        _series(
            "Freshness (age of the job's status)",
            "Seconds since the job last wrote its status, as the API reads it (the job writes a heartbeat "
            "every ~2 s; over 30 s the API serves the batch lists). +Inf: no status was ever seen.",
            "s",
            [("max(recommndr_stream_status_age_seconds)", "age")],
            width=8,
        ).thresholds(_thresholds((None, "green"), (30, "red")))
    )
    d = d.with_panel(
        stat.Panel().title("Trending live").datasource(DATASOURCE).height(8).span(8)
        .description("1 when every API worker serves the job's windows in /trending and popularity; "
                     "0: the batch lists (alert RecommndrTrendingServesBatch after 5 minutes).")
        .thresholds(_thresholds((None, "red"), (1, "green")))
        .with_target(_target("min(recommndr_stream_live)", "live", "A"))
    )  # fmt: skip
    return d.with_panel(
        _series(
            "Stream consistency (job / API events, last hour)",
            "The job's last-hour events over the API worker's own count of the events it accepted, for the "
            "products both know: 1 = agree; with N API workers each sees about 1/N of the events (reads ~N), "
            "and events produced straight to the topic (the simulator) raise it too.",
            "short",
            [("recommndr_stream_consistency_ratio", "{{instance}} {{pid}}")],
            width=8,
        )
    ).with_panel(
        _series(
            "Session agreement (job sessions / write-through)",
            "Share of recently active shoppers whose session products, as the job computed them, are the "
            "newest of the products the API folded into their record itself (compared where both saw the "
            "same newest event): 1 = agree.",
            "percentunit",
            [("recommndr_stream_session_agreement_ratio", "{{instance}} {{pid}}")],
            width=8,
        )
    )


# --- drift --------------------------------------------------------------------------------------


def drift_dashboard() -> Dashboard:
    v = 'variant=~"$variant"'
    psi_steps = _thresholds((None, "green"), (0.1, "orange"), (0.25, "red"))
    return (
        Dashboard("Recommndr drift")
        .uid("recommndr-drift")
        .description("What the drift watcher (recommndr monitor watch) checks, per variant.")
        .tags(["recommndr", "generated", "drift"])
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            QueryVariable("variant").label("Variant").datasource(DATASOURCE)
            .query("label_values(recommndr_feature_psi, variant)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True).all_value(".*")
            .current(VariableOption(text="All", value="$__all"))
        )
        .with_variable(
            QueryVariable("feature").label("Feature").datasource(DATASOURCE)
            .query('label_values(recommndr_feature_psi{variant=~"$variant"}, feature)')
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True).all_value(".*")
            .current(VariableOption(text="All", value="$__all"))
        )
        .with_row(Row("Drift"))
        .with_panel(
            _series("Drift flags", "1 while the calibrated check flags drift of that kind (feature, score, "
                    "confidence, validation), else 0.", "short",
                    [(f"max by (variant, kind) (recommndr_drift{{{v}}})", "{{variant}} {{kind}}")], width=24)
            .min(0).max(1)
        )
        .with_panel(
            _series("PSI per feature", "Population stability index of each ranking feature against the "
                    "training reference (rule of thumb: 0.1 moderate, 0.25 large shift).", "short",
                    [(f'max by (variant, feature) (recommndr_feature_psi{{{v}, feature=~"$feature"}})',
                      "{{variant}} {{feature}}")])
            .thresholds(psi_steps)
        )
        .with_panel(
            _series("Score PSI", "PSI of the ranker's scores against the hold-out's.", "short",
                    [(f"max by (variant) (recommndr_score_psi{{{v}}})", "{{variant}}")])
            .thresholds(psi_steps)
        )
        .with_panel(
            _series("Confidence drop", "Relative drop of the median top-1 score margin against the reference.",
                    "percentunit", [(f"max by (variant) (recommndr_confidence_drop{{{v}}})", "{{variant}}")])
        )
        .with_panel(
            _series("Validation failures", "Share of events refused: the watcher's window, and the API's "
                    "refusals over all events offered to it.", "percentunit",
                    [("max(recommndr_validation_failure_rate)", "watcher window"),
                     (f"sum(rate(recommndr_events_rejected_total[{RATE_INTERVAL}])) / "
                      f"(sum(rate(recommndr_events_rejected_total[{RATE_INTERVAL}])) + "
                      f"sum(rate(recommndr_events_total[{RATE_INTERVAL}])) > 0)", "API")])
        )
        .with_panel(
            stat.Panel().title("Since the last check").datasource(DATASOURCE).unit("s").height(6).span(12)
            .description("Seconds since the watcher last ran a check (it runs every few minutes).")
            .thresholds(_thresholds((None, "green"), (900, "red")))
            .with_target(_target("time() - max(recommndr_drift_last_check_timestamp_seconds)", "age", "A"))
        )
        .with_panel(
            _series("Window size", "Events (or served lists) in the window each check compared.", "short",
                    [(f"max by (variant) (recommndr_drift_window_size{{{v}}})", "{{variant}}")])
        )
    )  # fmt: skip


DASHBOARDS = {"recommndr-api": api_dashboard, "recommndr-drift": drift_dashboard}


def dashboard_json(name: str) -> str:
    """The dashboard as the committed file holds it: sorted keys, two-space indent, a final newline;
    panels numbered in order (Grafana needs each panel id unique; the SDK leaves them unset)."""
    if name not in DASHBOARDS:
        raise KeyError(f"unknown dashboard {name!r}; known: {', '.join(DASHBOARDS)}")
    data = json.loads(JSONEncoder(sort_keys=True).encode(DASHBOARDS[name]().build()))
    for i, panel in enumerate(data["panels"], start=1):
        panel["id"] = i
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(out: Path) -> list[Path]:
    """Write every dashboard to ``out/NAME.json``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DASHBOARDS:
        path = out / f"{name}.json"
        path.write_text(dashboard_json(name), encoding="utf-8")
        paths.append(path)
    return paths


def stale_dashboards(out: Path) -> list[str]:
    """The dashboards whose file in ``out`` is missing or differs from what this module writes."""
    stale = []
    for name in DASHBOARDS:
        path = out / f"{name}.json"
        if not path.is_file() or path.read_text(encoding="utf-8") != dashboard_json(name):
            stale.append(name)
    return stale


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every target of every panel of a dashboard's JSON, in order."""
    found = []
    for panel in dashboard.get("panels", []):
        for t in panel.get("targets", []):
            found.append(PanelQuery(dashboard["uid"], panel["title"], t["refId"], t["expr"],
                                    t.get("legendFormat", ""), bool(t.get("instant"))))  # fmt: skip
    return found


def default_values(dashboard: Mapping[str, Any], rate_interval: str) -> dict[str, str]:
    """What each template variable stands for when nobody picks: "All" (the variable's allValue)
    for a multi-value query variable, the current option of an interval variable; and
    ``$__rate_interval``, which Grafana derives from the scrape interval, as given."""
    values = {"__rate_interval": rate_interval}
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query" and var.get("includeAll"):
            values[var["name"]] = var.get("allValue", ".*")
        elif var.get("type") in ("interval", "custom"):
            current = var.get("current") or {}
            values[var["name"]] = str(current.get("value") or str(var.get("query", "")).split(",")[0])
    return values


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with its template variables replaced as Grafana would (``$name`` and ``${name}``,
    ``$__rate_interval`` among them); a variable missing from ``values`` raises KeyError naming it."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"no value for the template variable ${name} in {expr!r}")
        return values[name]

    return _VAR.sub(sub, expr)
