"""The storefront in Debian's Chromium against the real API: frontend/e2e/storefront.test.mjs
(node:test + playwright-core) checks the pages, the filters, the product page, the event loop
(counted by the API's /metrics), keyboard use, phone width and console errors; it saves a
screenshot of each page under reports/screenshots/ and the page timings to
reports/storefront-timings.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.servers import FRONTEND, REPO, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
REPORTS = REPO / "reports"
TIMINGS = REPORTS / "storefront-timings.json"
SCREENSHOTS = REPORTS / "screenshots"
BROWSER_TESTS = ["e2e/storefront.test.mjs"]


def test_storefront_in_chromium(
    storefront_url: str, api_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)")
    node = shutil.which("node")
    assert node, "node is not on PATH: install Node.js 20"
    TIMINGS.unlink(missing_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()

    env = clean_env(
        STOREFRONT_URL=storefront_url,
        RECOMMNDR_API_URL=api_url,
        REPORT_DIR=str(REPORTS),
        CHROMIUM_PATH=str(CHROMIUM),
    )
    proc = subprocess.run(
        [node, "--test", "--test-reporter=spec", *BROWSER_TESTS],
        cwd=FRONTEND,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"the browser tests failed (exit {proc.returncode}):\n{output}"

    timings = json.loads(TIMINGS.read_text())
    shots = sorted(p.name for p in SCREENSHOTS.glob("*.png"))
    assert {"home-known-shopper.png", "product.png", "cart.png", "catalogue-filtered.png"} <= set(shots)
    with capsys.disabled():
        print(f"\nstorefront page timings (ms, median of {timings['runs']}, {timings['browser']}):")
        for name, t in timings["pages"].items():
            print(
                f"  {name:<10} ttfb {t['ttfb_ms']:>6}  DOMContentLoaded {t['dom_content_loaded_ms']:>6}  "
                f"load {t['load_ms']:>6}  list visible {t['list_visible_ms']:>6}"
            )
        print(
            f"  -> {TIMINGS.relative_to(REPO)}; screenshots in {SCREENSHOTS.relative_to(REPO)}/: {', '.join(shots)}"
        )
