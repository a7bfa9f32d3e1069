"""Shared fixtures. Markers: every test module sets ``pytestmark`` (unit, integration or e2e)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import prometheus_client  # noqa: F401  before any test imports feast, as in the API process
import pytest

from recommndr.config import get_settings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
# Importing feast sets PROMETHEUS_MULTIPROC_DIR for the whole process, and prometheus_client picks
# its value store when it is imported: imported first (above), the API's metrics stay in memory,
# as in `recommndr serve`, which never imports feast.


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded ``tiny`` synthetic dataset, generated once per test session (read-only)."""
    from recommndr.data.synthetic import generate

    out = tmp_path_factory.mktemp("tiny") / "data"
    generate("tiny", out, seed=7)
    return out


@pytest.fixture(scope="session")
def artifacts(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models trained on the tiny shop, shared by the serving and browser tests (read-only)."""
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import train

    out = tmp_path_factory.mktemp("serving") / "art"
    train(tiny_dataset, out, TrainConfig.model_validate({"ranker": {"n_estimators": 60}}))
    return out


@pytest.fixture
def tiny_copy(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset that a test may corrupt."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_dataset, dst)
    return dst


@pytest.fixture(autouse=True)
def _fresh_settings(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    # each test gets its own online store file (the default is shared data/online/features.db)
    online = tmp_path_factory.mktemp("online") / "features.db"
    monkeypatch.setenv("RECOMMNDR_ONLINE_STORE_PATH", str(online))
    monkeypatch.setenv("RECOMMNDR_TRAFFIC_FILE", str(online.parent / "traffic.json"))
    monkeypatch.setenv("RECOMMNDR_ALERT_INBOX_PATH", str(online.parent / "alerts.db"))
    monkeypatch.setenv("RECOMMNDR_CONTROL_FILE", str(online.parent / "control.json"))
    monkeypatch.setenv("RECOMMNDR_CANARY_FILE", str(online.parent / "canary.json"))
    monkeypatch.setenv("RECOMMNDR_AUDIT_PATH", str(online.parent / "audit.jsonl"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that executed no test fails, even when everything was skipped or deselected."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller decides
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    ran = sum(len(reporter.stats.get(k, [])) for k in ("passed", "failed", "error", "xfailed", "xpassed"))
    if ran == 0 and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.NO_TESTS_COLLECTED
