"""``recommndr serve`` as a user runs it: one process, or several workers sharing the port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.ports import free_port

pytestmark = pytest.mark.unit


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _metrics(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text: str = r.read().decode()
    return text


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_with_one_or_more_workers(artifacts: Path, tmp_path: Path, workers: int) -> None:
    port = free_port()
    env = dict(os.environ, RECOMMNDR_EVENT_LOG_DIR=str(tmp_path / "events"),
               RECOMMNDR_ONLINE_STORE_PATH=str(tmp_path / "online.db"),
               RECOMMNDR_TRAFFIC_FILE=str(tmp_path / "traffic.json"))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "recommndr.cli", "serve", "--artifacts", str(artifacts), "--port", str(port),
         "--workers", str(workers)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if _get(f"{base}/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not become ready"
            time.sleep(0.2)
        while "recommndr_ready 1.0" not in _metrics(base):  # 1 once every worker has loaded
            assert time.monotonic() < deadline, "not every worker became ready"
            time.sleep(0.2)
        versions = set()
        for user in range(1, 41):  # requests land on any worker: all serve the same model
            status, body = _get(f"{base}/recommendations/{user}?k=3")
            assert status == 200 and len(body["items"]) == 3  # type: ignore[arg-type]
            versions.add(body["model_version"])
        assert len(versions) == 1
        for _ in range(6):  # whichever worker answers, /metrics counts every worker's requests
            text = _metrics(base)
            served = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("recommndr_recommendations_served_total{"))  # fmt: skip
            assert served == 40, text
            assert (
                'recommndr_request_seconds_count{endpoint="/recommendations/{user_id}",variant="champion"} 40.0'
                in text
            )
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, pressed twice as people do
        time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"Traceback" not in stderr, stderr.decode()


def test_serve_refuses_both_a_folder_and_the_registry(artifacts: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "recommndr.cli", "serve", "--artifacts", str(artifacts), "--registry", "sqlite:///x.db"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "not both" in r.stderr + r.stdout
