"""The OpenAPI document is exact: schemathesis, with all its checks, against the real API
(``recommndr serve``) finds nothing — every status a path answers is declared, undeclared methods
get 405 with ``Allow``, schema-valid requests are accepted and schema-violating ones refused, and
no request gets a 5xx. The admin routes are fuzzed with a valid token (and without one); so is the
alert webhook, whose secret is set to that same token (schemathesis sends one Authorization header)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from tests.e2e.servers import clean_env, log_tail, running, wait_ok
from tests.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SECRET = "schemathesis-admin-key-0123456789abcdef"
SEED = "20261201"  # fixed: a failure reproduces; the examples still cover every operation


def test_schemathesis_all_checks_find_nothing(artifacts: Path, tmp_path: Path) -> None:
    port = free_port()
    now = int(time.time())
    token = jwt.encode({"sub": "fuzz", "iss": "recommndr", "aud": "recommndr-admin", "iat": now,
                        "exp": now + 3000}, SECRET, algorithm="HS256")  # fmt: skip
    env = clean_env(RECOMMNDR_ADMIN_JWT_SECRET=SECRET, RECOMMNDR_EVENT_LOG_DIR=str(tmp_path / "events"),
                    RECOMMNDR_ONLINE_STORE_PATH=str(tmp_path / "online.db"),
                    RECOMMNDR_TRAFFIC_FILE=str(tmp_path / "traffic.json"),
                    RECOMMNDR_ALERT_INBOX_PATH=str(tmp_path / "alerts.db"),
                    RECOMMNDR_ALERT_WEBHOOK_TOKEN=token)  # fmt: skip
    cli = Path(sys.executable).parent
    serve = [
        str(cli / "recommndr"),
        "serve",
        "--artifacts",
        str(artifacts),
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    report = tmp_path / "schemathesis.txt"
    with running(serve, env=env, cwd=tmp_path, log=tmp_path / "serve.log") as proc:
        base = f"http://127.0.0.1:{port}"
        wait_ok(f"{base}/ready", proc, tmp_path / "serve.log")
        with report.open("wb") as out:
            rc = subprocess.run(
                [str(cli / "schemathesis"), "run", f"{base}/openapi.json", "--checks", "all",
                 "--max-examples", "60", "--seed", SEED, "--workers", "1", "--no-color",
                 "-H", f"Authorization: Bearer {token}"],
                cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=540, check=False,
            ).returncode  # fmt: skip
    text = report.read_text(errors="replace")
    assert rc == 0, (
        f"schemathesis found failures:\n{text[-12000:]}\n--- API log:\n{log_tail(tmp_path / 'serve.log')}"
    )
    assert "Tested: 28" in text, text[-3000:]  # every operation of the document was exercised
