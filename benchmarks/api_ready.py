"""Shared by the benchmarks that start ``recommndr serve``: wait until every worker is ready."""

from __future__ import annotations

import subprocess
import time
import urllib.request


def wait_ready(
    base: str, server: subprocess.Popen[bytes], t0: float, timeout_s: float, poll_s: float
) -> float:
    """Seconds from ``t0`` until ``/metrics`` says ``recommndr_ready 1.0`` (the minimum over the
    workers: every one has loaded); exits when ``timeout_s`` passes or the server stops."""
    while True:
        try:
            with urllib.request.urlopen(f"{base}/metrics", timeout=1) as r:
                if b"\nrecommndr_ready 1.0" in r.read():
                    return time.perf_counter() - t0
        except OSError:
            pass
        if time.perf_counter() - t0 > timeout_s or server.poll() is not None:
            raise SystemExit("the API did not become ready")
        time.sleep(poll_s)
