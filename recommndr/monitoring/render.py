"""Draw a dashboard from its JSON, without Grafana: each panel's expressions (template variables
expanded) are queried from a Prometheus server's HTTP API (``/api/v1/query_range``) and drawn
with matplotlib on a grid that follows the panels' ``gridPos``. There is no Grafana server here;
this is how the README's picture is made, from the same JSON Grafana would load.

Only what the dashboards use is drawn: time series (lines; a ``low``/``high`` pair of one series
is shaded as its interval), stats (the last value) and tables (one row per series). Answers are
read with a size limit, and a query that fails is drawn as its error, so one bad panel never
hides the others.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recommndr.errors import UserInputError
from recommndr.monitoring.dashboards import expand

MAX_ANSWER_BYTES = 8 << 20  # one query_range answer
MAX_SERIES = 40  # drawn per panel; more are counted in the title


class PrometheusError(UserInputError):
    """Prometheus could not be reached or refused a query."""

    code = "prometheus_error"


class PrometheusUnreachableError(PrometheusError):
    """No answer at all: every other panel would fail the same way."""


@dataclass
class Series:
    labels: dict[str, str]
    times: list[float]
    values: list[float]


@dataclass
class PanelData:
    title: str
    kind: str
    unit: str
    series: list[tuple[str, Series]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def query_range(
    url: str, expr: str, start: float, end: float, step: float, timeout: float = 10.0
) -> list[Series]:
    """One range query; raises PrometheusError with Prometheus' own message when it refuses it."""
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query_range?{params}", timeout=timeout) as res:
            body = res.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:  # 400/422: a bad expression, with Prometheus' reason
        body = exc.read(MAX_ANSWER_BYTES + 1)
    except (urllib.error.URLError, OSError) as exc:
        raise PrometheusUnreachableError(f"Prometheus at {url} not reachable: {exc}") from exc
    if len(body) > MAX_ANSWER_BYTES:
        raise PrometheusError(f"answer to {expr!r} is over {MAX_ANSWER_BYTES} bytes")
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise PrometheusError(f"{url} did not answer JSON (is it Prometheus?)") from exc
    if answer.get("status") != "success":
        raise PrometheusError(f"{answer.get('errorType', 'error')}: {answer.get('error', answer)}")
    out = []
    for r in answer["data"]["result"]:
        pts = [(float(t), float(v)) for t, v in r["values"]]
        out.append(Series(dict(r["metric"]), [t for t, _ in pts], [v for _, v in pts]))
    return out


def _legend(fmt: str, labels: Mapping[str, str]) -> str:
    text = fmt
    for k, v in labels.items():
        text = text.replace("{{" + k + "}}", v).replace("{{ " + k + " }}", v)
    while "{{" in text and "}}" in text:  # a label the series lacks: Grafana shows nothing
        a = text.index("{{")
        text = text[:a] + text[text.index("}}", a) + 2 :]
    return " ".join(text.split()) or json.dumps(labels, sort_keys=True)


def collect(dashboard: Mapping[str, Any], url: str, values: Mapping[str, str], start: float, end: float,
            step: float) -> list[tuple[dict[str, Any], PanelData]]:  # fmt: skip
    """Every non-row panel of ``dashboard`` with its series from Prometheus at ``url``."""
    panels = []
    for p in dashboard.get("panels", []):
        if p.get("type") == "row":
            continue
        unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        data = PanelData(p.get("title", ""), p.get("type", "timeseries"), unit)
        for t in p.get("targets", []):
            try:
                for s in query_range(url, expand(t["expr"], values), start, end, step):
                    data.series.append((_legend(t.get("legendFormat", ""), s.labels), s))
            except PrometheusUnreachableError:
                raise
            except (PrometheusError, KeyError) as exc:  # this panel's query: drawn as its error
                data.errors.append(str(exc))
        panels.append((p, data))
    return panels


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.1f} %"
    if unit == "s":
        return f"{value * 1000:.1f} ms" if abs(value) < 1 else f"{value:.1f} s"
    if unit == "bytes":
        return f"{value / 2**20:.0f} MiB"
    return f"{value:.3g}"


def _scale(unit: str) -> tuple[float, str]:
    return {"s": (1000.0, "ms"), "percentunit": (100.0, "%"), "bytes": (1 / 2**20, "MiB"),
            "reqps": (1.0, "req/s")}.get(unit, (1.0, ""))  # fmt: skip


def draw(
    panels: list[tuple[dict[str, Any], PanelData]], title: str, out: Path, end: float, dpi: int = 60
) -> Path:
    """Draw the panels on their Grafana grid (24 columns) into a PNG at ``out``; time runs to ``end``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p, _ in panels), default=1)
    fig = plt.figure(figsize=(24 * 0.75, rows * 0.42), dpi=dpi)
    fig.suptitle(title, fontsize=14, x=0.01, ha="left")
    grid = fig.add_gridspec(
        rows, 24, left=0.03, right=0.99, top=1 - 0.6 / rows, bottom=0.02, hspace=0.0, wspace=0.0
    )
    for panel, data in panels:
        g = panel["gridPos"]
        ax = fig.add_subplot(grid[g["y"] : g["y"] + g["h"], g["x"] : g["x"] + g["w"]])
        box = ax.get_position()  # room for the title and the axis labels inside the panel's cell
        ax.set_position((box.x0 + 0.012, box.y0 + 0.014, box.width - 0.018, box.height - 0.03))
        ax.set_title(data.title, fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        if data.kind in ("stat", "table") or not data.series:
            ax.set_xticks([])
            ax.set_yticks([])
            lines = [f"{name}: {_fmt(s.values[-1], data.unit)}" for name, s in data.series[:8] if s.values]
            text = "\n".join(lines or data.errors[:2] or ["no data"])
            ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12 if data.kind == "stat" else 8,
                    transform=ax.transAxes, wrap=True)  # fmt: skip
            continue
        factor, label = _scale(data.unit)
        by_name = {name: s for name, s in data.series}
        drawn = 0
        for name, s in data.series:
            if name.endswith((" low", " high")) or drawn >= MAX_SERIES:
                continue
            times = [(t - end) / 60 for t in s.times]
            (line,) = ax.plot(times, [v * factor for v in s.values], linewidth=1, label=name)
            drawn += 1
            low, high = by_name.get(f"{name} low"), by_name.get(f"{name} high")
            if low is not None and high is not None:
                lo = dict(zip(low.times, low.values, strict=True))
                hi = dict(zip(high.times, high.values, strict=True))
                ts = [t for t in s.times if t in lo and t in hi]
                ax.fill_between([(t - end) / 60 for t in ts], [lo[t] * factor for t in ts],
                                [hi[t] * factor for t in ts], color=line.get_color(), alpha=0.2, linewidth=0)  # fmt: skip
        ax.set_xlabel("minutes before the end", fontsize=7)
        ax.set_ylabel(label, fontsize=7)
        ax.legend(fontsize=6, loc="upper left", ncol=2, frameon=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def load_dashboard(path: Path) -> dict[str, Any]:
    """A dashboard's JSON; a file that is not one is a UserInputError naming it."""
    try:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: not a readable dashboard JSON ({exc})") from exc
    if not isinstance(dashboard, dict) or not isinstance(dashboard.get("panels"), list):
        raise UserInputError(f"{path}: no 'panels' list: not a Grafana dashboard")
    return dashboard


def render(dashboard: Mapping[str, Any], url: str, out: Path, values: Mapping[str, str], minutes: float = 5.0,
           end: float | None = None) -> Path:  # fmt: skip
    """Query and draw ``dashboard``'s panels over the last ``minutes`` into ``out``."""
    import time

    if not 0 < minutes <= 24 * 60:
        raise UserInputError(f"minutes: {minutes} is outside 0-1440")
    end = time.time() if end is None else end
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 300)  # ~300 points a series
    panels = collect(dashboard, url, values, start, end, step)
    return draw(panels, str(dashboard.get("title", "dashboard")), out, end)
