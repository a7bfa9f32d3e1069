"""Real services for the integration tests, started by the tests that need them."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
# Azurite's documented, public development account (not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _wait_listening(proc: subprocess.Popen[bytes], port: int, name: str, timeout_s: float) -> None:
    """Wait until ``proc`` accepts connections on ``port``; fail with its stderr if it exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            assert proc.poll() is None, f"{name} exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{name} did not start in {timeout_s:.0f} s")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Azurite blob service on a free port; yields its connection string."""
    exe = ROOT / ".tools/node_modules/.bin/azurite-blob"
    if not exe.exists():
        found = shutil.which("azurite-blob")
        assert found, "Azurite is missing: `make setup` installs it into .tools/"
        exe = Path(found)
    port = free_port()
    data = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [str(exe), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data),
         "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_listening(proc, port, "Azurite", 30)
    yield (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    proc.send_signal(signal.SIGINT)  # Azurite ignores SIGTERM for a while
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real redis-server (Debian's) on a free port, no persistence; yields its URL and process."""
    exe = shutil.which("redis-server")
    assert exe, "redis-server is missing: `make setup` installs it with apt"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _wait_listening(proc, port, "redis-server", 15)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
