"""/metrics with several worker processes (prometheus_client's multiprocess mode): each process
writes its values to the shared folder; whichever renders reports the totals and the rates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

WORKER = """
from recommndr.serving.metrics import ApiMetrics
m = ApiMetrics()
assert m.multiprocess
m.served.labels("champion", "two_stage").inc({lists})
m.events.labels("view", "champion").inc({views})
m.latency.labels("/recommendations/{{user_id}}", "champion").observe(0.002)
m.ready.set({ready})
print(m.render().decode())
"""


def _worker(folder: Path, lists: int, views: int, ready: int = 1) -> str:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder))
    code = WORKER.format(lists=lists, views=views, ready=ready)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout


def test_every_worker_reports_the_sum_over_all_workers(tmp_path: Path) -> None:
    _worker(tmp_path, lists=3, views=1)
    _worker(tmp_path, lists=5, views=2)
    text = _worker(tmp_path, lists=0, views=0)
    assert 'recommndr_recommendations_served_total{path="two_stage",variant="champion"} 8.0' in text
    assert 'recommndr_events_total{event_type="view",variant="champion"} 3.0' in text
    assert (
        'recommndr_request_seconds_count{endpoint="/recommendations/{user_id}",variant="champion"} 3.0'
        in text
    )
    assert 'recommndr_variant_rate{rate="ctr",variant="champion"} 0.375' in text  # 3 views / 8 lists
    assert "recommndr_ready 1.0" in text


def test_ready_only_when_every_worker_is(tmp_path: Path) -> None:
    _worker(tmp_path, lists=0, views=0, ready=1)
    assert "recommndr_ready 0.0" in _worker(tmp_path, lists=0, views=0, ready=0)


def test_one_process_keeps_its_own_registry() -> None:
    code = """
from recommndr.serving.metrics import ApiMetrics
a, b = ApiMetrics(), ApiMetrics()
assert not a.multiprocess
a.served.labels("champion", "two_stage").inc(2)
print(a.render().decode())
print("---")
print(b.render().decode())
"""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    mine, other = out.split("---")
    assert 'recommndr_recommendations_served_total{path="two_stage",variant="champion"} 2.0' in mine
    assert "recommndr_recommendations_served_total{" not in other


PROCESS_WORKER = """
import json, time
from recommndr.serving.metrics import ApiMetrics, resident_bytes
m = ApiMetrics()
assert m.multiprocess
t0 = time.process_time()
while time.process_time() - t0 < {burn}:  # spend some CPU
    sum(i * i for i in range(1000))
lo = time.process_time()
m.sample_process()  # counts between lo and hi
hi = time.process_time()
{end}
print(json.dumps({{"lo": lo, "hi": hi, "rss": resident_bytes()}}))
"""


def _process_worker(folder: Path, burn: float, end: str = "") -> dict[str, float]:
    import json

    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(folder))
    out = subprocess.run(
        [sys.executable, "-c", PROCESS_WORKER.format(burn=burn, end=end)],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return dict(json.loads(out.splitlines()[-1]))


def _value(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    found = [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]
    assert len(found) == 1, (name, found)
    return float(found[0])


def test_process_metrics_are_the_sum_over_the_workers(tmp_path: Path) -> None:
    """RSS sums the live workers (one that ended cleanly drops out); CPU seconds keep every
    worker's, the ended one's included, so the counter never goes down when a worker is replaced."""
    live = _process_worker(tmp_path, burn=0.3)  # ends without close(): still live for the folder
    ended = _process_worker(tmp_path, burn=0.3, end="m.close()")
    code = """
import time
from recommndr.serving.metrics import ApiMetrics, resident_bytes
m = ApiMetrics()
before = time.process_time()
text = m.render().decode()
print(before, time.process_time(), resident_bytes())
print(text)
"""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    first, text = out.split("\n", 1)
    before, after, own_rss = (float(x) for x in first.split())
    cpu = _value(text, "process_cpu_seconds_total")
    assert live["lo"] + ended["lo"] + before <= cpu <= live["hi"] + ended["hi"] + after, (cpu, live, ended)
    rss = _value(text, "process_resident_memory_bytes")
    # the live worker's and this one's; the ended worker's (about as large) is not counted
    assert abs(rss - (live["rss"] + own_rss)) < 0.25 * own_rss, (rss, live, ended, own_rss)
    assert _value(text, "recommndr_worker_processes") == 2.0


def test_one_process_reports_its_own_cpu_and_memory() -> None:
    code = """
import time
from recommndr.serving.metrics import ApiMetrics, resident_bytes
m = ApiMetrics()
assert not m.multiprocess
before = time.process_time()
text = m.render().decode()
print(before, time.process_time(), resident_bytes())
print(text)
"""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    first, text = out.split("\n", 1)
    before, after, own_rss = (float(x) for x in first.split())
    assert before <= _value(text, "process_cpu_seconds_total") <= after
    assert abs(_value(text, "process_resident_memory_bytes") - own_rss) < 0.1 * own_rss
    assert _value(text, "recommndr_worker_processes") == 1.0
