"""The Functions app's requirements.txt pins what the lock pins (the deployed app runs what the
tests ran)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip()
    return out


def test_every_pin_of_the_functions_app_is_the_locks() -> None:
    app, lock = _pins(ROOT / "requirements.txt"), _pins(ROOT / "requirements" / "lock.txt")
    assert "azure-functions-durable" in app and "azure-functions" in app
    assert {n: v for n, v in app.items() if lock.get(n) != v} == {}
