"""/metrics with several worker processes (prometheus_client's multiprocess mode): each process
writes its values to the shared folder; whichever renders reports the totals and the rates."""

from __future__ import annotations

import os
import shutil
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


def _rss_pids(text: str) -> set[str]:
    return {line.split('pid="')[1].split('"')[0] for line in text.splitlines()
            if line.startswith("process_resident_memory_bytes{")}  # fmt: skip


def test_each_live_worker_reports_its_own_memory_and_cpu(tmp_path: Path) -> None:
    """Multiprocess mode: the rendering worker and a live sibling each under their pid; a worker
    that ended (its files left behind, as after a crash) reports nothing."""
    _worker(tmp_path, lists=0, views=0)  # ended: its pid is gone
    (dead,) = {p.name.split("_")[-1][:-3] for p in tmp_path.glob("gauge_livemin_*.db")}
    sibling = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        # the file its ApiMetrics would write (a copy of the ended worker's)
        shutil.copy(tmp_path / f"gauge_livemin_{dead}.db", tmp_path / f"gauge_livemin_{sibling.pid}.db")
        text = _worker(tmp_path, lists=0, views=0)
    finally:
        sibling.communicate(b"")
    pids = _rss_pids(text)
    assert str(sibling.pid) in pids and dead not in pids and len(pids) == 2  # the renderer is the other
    assert f'process_cpu_seconds_total{{pid="{sibling.pid}"}}' in text


def test_one_process_reports_its_memory_and_cpu() -> None:
    code = "from recommndr.serving.metrics import ApiMetrics\nprint(ApiMetrics().render().decode())"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    text = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    rss = [line for line in text.splitlines() if line.startswith("process_resident_memory_bytes ")]
    assert len(rss) == 1 and float(rss[0].split()[1]) > 10e6
    assert "process_cpu_seconds_total " in text
