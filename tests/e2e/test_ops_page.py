"""The ops page in Debian's Chromium against an API with admin access and a challenger, through the
storefront's admin route: frontend/e2e/ops.test.mjs checks that /ops refuses without a token and with
a wrong one (and then shows no data), that a manual rollback from the page sends the challenger's
traffic back to the champion and appears in the audit trail, that the canary's progress is drawn,
and that the Retrain panel starts the API's retrain (a stand-in command here) and shows it running,
then finished with its outcome.
Screenshots: reports/ops/screenshots/ops-*.png."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.servers import FRONTEND, REPO, admin_token, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
REPORTS = REPO / "reports" / "ops"  # not reports/screenshots: test_storefront.py empties that


def test_ops_page_in_chromium(ops_storefront_url: str, ops_api_url: str, ops_retrain_gate: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)")
    node = shutil.which("node")
    assert node, "node is not on PATH: install Node.js 20"
    env = clean_env(
        STOREFRONT_URL=ops_storefront_url,
        RECOMMNDR_API_URL=ops_api_url,
        REPORT_DIR=str(REPORTS),
        CHROMIUM_PATH=str(CHROMIUM),
        ADMIN_TOKEN=admin_token(),
        WRONG_ADMIN_TOKEN=admin_token(secret="another-key-0123456789abcdef0123456789"),
        RETRAIN_GATE=str(ops_retrain_gate),
    )
    proc = subprocess.run(
        [node, "--test", "--test-reporter=spec", "e2e/ops.test.mjs"],
        cwd=FRONTEND,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the ops page's browser tests failed (exit {proc.returncode}):\n{output}"
    assert (REPORTS / "screenshots" / "ops-after-rollback.png").exists()
    assert (REPORTS / "screenshots" / "ops-retrain-finished.png").exists()
