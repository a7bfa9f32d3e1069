"""Faults injected into the challenger: ``errors`` fails its stated share of the challenger's
answers (counted per variant), ``slow`` adds its delay, ``random`` and ``drift`` change how the
challenger ranks — and the drift check on the challenger's window flags them — while the
champion answers exactly as before; a fault acts on the challenger version it was set for only,
and never without fault injection on."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import numpy as np
import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.monitoring import drift
from recommndr.monitoring.window import Window
from recommndr.ranking.features import FEATURES
from recommndr.serving.app import create_app
from recommndr.serving.control import ControlState
from recommndr.serving.faults import DRIFT_COLUMNS, DRIFT_SCALE, Fault, InjectedFaultError

pytestmark = pytest.mark.unit
SECRET = "test-admin-key-0123456789abcdef0123"


def auth() -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "bench", "iss": "recommndr", "aud": "recommndr-admin", "iat": now, "exp": now + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
def env(challenger_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", SECRET)
    monkeypatch.setenv("RECOMMNDR_CHALLENGER_ARTIFACTS_DIR", str(challenger_artifacts))
    monkeypatch.setenv("RECOMMNDR_FAULT_INJECTION", "true")
    monkeypatch.setenv("RECOMMNDR_FAULT_ERROR_RATE", "0.25")
    monkeypatch.setenv("RECOMMNDR_FAULT_DELAY_S", "0.2")
    monkeypatch.setenv("RECOMMNDR_EXPLORE_SHARE", "0")  # the lists as ranked, to compare them
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _client(artifacts: Path, tmp: Path) -> TestClient:
    return TestClient(create_app(artifacts, tmp / "events"), client=("127.0.0.1", 50000))


def _split(c: TestClient, share: float, fault: str) -> None:
    assert c.post("/models/traffic", json={"challenger": share}, headers=auth()).status_code == 200
    r = c.post("/models/fault", json={"kind": fault}, headers=auth())
    assert r.status_code == 200, r.json()
    assert r.json()["fault"]["kind"] == fault and r.json()["audit"]["action"] == "fault"


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_the_error_fault_fails_its_rate_exactly() -> None:
    for rate, failures in ((0.1, 100), (0.25, 250), (0.0, 0), (1.0, 1000), (1 / 3, 333)):
        f = Fault("errors", 0.0, "v", error_rate=rate)
        failed = 0
        for _ in range(1000):
            try:
                assert f.enter() == 0.0
            except InjectedFaultError:
                failed += 1
        assert failed == failures, rate
    assert Fault("slow", 0.0, "v", delay_s=0.3).enter() == 0.3
    assert Fault("random", 0.0, "v").enter() == 0.0
    with pytest.raises(ValueError, match="not a fault"):
        Fault("none", 0.0, "v")  # "none" is the absence of one


def test_the_drift_and_random_faults_replace_features_and_scores_only_as_stated() -> None:
    X = np.random.default_rng(0).random((50, len(FEATURES)), dtype=np.float32)
    drifted = Fault("drift", 0.0, "v").features(X)
    flags = [FEATURES.index(n) for n in ("from_als", "from_copurchase", "from_popularity", "item_repeatable")]
    assert np.array_equal(drifted[:, flags], X[:, flags]) and not set(flags) & set(DRIFT_COLUMNS.tolist())
    assert np.allclose(drifted[:, DRIFT_COLUMNS], X[:, DRIFT_COLUMNS] * DRIFT_SCALE)
    assert np.array_equal(X, np.random.default_rng(0).random((50, len(FEATURES)), dtype=np.float32))  # a copy
    scores = np.linspace(5, 1, 50, dtype=np.float32)
    random = Fault("random", 0.0, "v", seed=3).scores(scores)
    assert random.dtype == np.float32 and random.shape == scores.shape
    assert ((random >= 0) & (random < 1)).all() and not np.array_equal(np.argsort(random), np.argsort(scores))
    assert Fault("drift", 0.0, "v").scores(scores) is scores and Fault("random", 0.0, "v").features(X) is X


def test_errors_fail_the_challenger_only_and_are_counted_per_variant(
    env: None, artifacts: Path, tmp_path: Path
) -> None:
    with _client(artifacts, tmp_path) as c:
        state = c.app.state.recommndr  # type: ignore[attr-defined]
        _split(c, 0.5, "errors")
        status: dict[str, list[int]] = {"champion": [], "challenger": []}
        for u in range(1, 401):
            r = c.get(f"/recommendations/{u}?k=5")
            status[state.slots.variant_of(u)].append(r.status_code)
            if r.status_code == 500:
                assert r.json()["error"]["code"] == "injected_fault"
        assert set(status["champion"]) == {200}
        failed = status["challenger"].count(500)
        assert set(status["challenger"]) == {200, 500}
        assert failed == len(status["challenger"]) // 4  # the stated 25 %, exactly
        metrics = c.get("/metrics").text
        assert _metric(metrics, 'recommndr_variant_errors_total{variant="challenger"}') == failed
        assert _metric(metrics, 'recommndr_variant_errors_total{variant="champion"}') == 0
        view = c.get("/models/canary", headers=auth()).json()["variants"]
        assert view["challenger"]["errors"] == failed
        assert view["challenger"]["requests"] == len(status["challenger"])
        assert view["challenger"]["lists"] == len(status["challenger"]) - failed  # a failed one: no list
        assert view["champion"]["errors"] == 0 and view["champion"]["requests"] == len(status["champion"])
        _split(c, 0.5, "none")  # off again: every answer is a list
        assert {c.get(f"/recommendations/{u}?k=5").status_code for u in range(1, 101)} == {200}


def test_slow_adds_the_delay_to_the_challenger_only(env: None, artifacts: Path, tmp_path: Path) -> None:
    with _client(artifacts, tmp_path) as c:
        state = c.app.state.recommndr  # type: ignore[attr-defined]
        _split(c, 0.5, "slow")
        took: dict[str, list[float]] = {"champion": [], "challenger": []}
        for u in range(1, 41):
            t0 = time.perf_counter()
            assert c.get(f"/recommendations/{u}?k=5").status_code == 200
            took[state.slots.variant_of(u)].append(time.perf_counter() - t0)
        assert min(took["challenger"]) >= 0.2
        assert statistics.median(took["champion"]) < 0.2
        assert state.slots.champion.fault is None


@pytest.mark.parametrize(("kind", "flagged"), [("drift", "feature"), ("random", "score")])
def test_random_and_drift_change_the_challenger_only_and_its_window_shows_them(
    env: None, artifacts: Path, tmp_path: Path, kind: str, flagged: str
) -> None:
    users = range(1, 501)
    with _client(artifacts, tmp_path) as c:
        state = c.app.state.recommndr  # type: ignore[attr-defined]
        assert c.post("/models/traffic", json={"challenger": 0.5}, headers=auth()).status_code == 200
        healthy = {u: c.get(f"/recommendations/{u}?k=10").json()["items"] for u in users}
        clean = {v: Window.from_json(c.get(f"/monitoring/window?variant={v}", headers=auth()).json()["window"])
                 for v in ("champion", "challenger")}  # fmt: skip
        for v, model in (("champion", state.slots.champion), ("challenger", state.slots.challenger)):
            assert drift.check(model.reference, clean[v])["kinds"][flagged] is False, v
        _split(c, 0.5, kind)
        for model in (state.slots.champion, state.slots.challenger):  # the faulty window from now on
            model.window = type(model.window)(FEATURES)
        faulty = {u: c.get(f"/recommendations/{u}?k=10").json()["items"] for u in users}
        champion = [u for u in users if state.slots.variant_of(u) == "champion"]
        challenger = [u for u in users if state.slots.variant_of(u) == "challenger"]
        assert all(faulty[u] == healthy[u] for u in champion)  # the champion answers as before
        changed = sum(faulty[u] != healthy[u] for u in challenger)
        assert changed > 0.5 * len(challenger)
        windows = {v: Window.from_json(c.get(f"/monitoring/window?variant={v}", headers=auth()).json()["window"])
                   for v in ("champion", "challenger")}  # fmt: skip
        report = drift.check(state.slots.challenger.reference, windows["challenger"])
        assert report["drift"] is True and report["kinds"][flagged] is True, report["kinds"]
        assert drift.check(state.slots.champion.reference, windows["champion"])["drift"] is False


def test_a_fault_acts_on_its_challenger_version_and_only_with_fault_injection_on(
    env: None, artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _client(artifacts, tmp_path) as c:
        state = c.app.state.recommndr  # type: ignore[attr-defined]
        version = state.slots.challenger.version
        _split(c, 0.5, "random")
        assert state.slots.challenger.fault.kind == "random"
        assert state.slots.challenger.ranking.perturb is state.slots.challenger.fault
        assert state.slots.champion.fault is None and state.slots.champion.ranking.perturb is None
        state.slots.set_fault(Fault("random", 1.0, "another version"))  # a fault set for another challenger
        assert state.slots.challenger.fault is None and state.slots.challenger.ranking.perturb is None
        _split(c, 0.5, "none")
        assert state.slots.challenger.fault is None
    # a fault left in the control file is ignored by an API without fault injection
    ControlState(get_settings().control_file).update(
        lambda s: {**s, "fault": {"kind": "errors", "since": 1.0, "version": version}}
    )
    with _client(artifacts, tmp_path) as c:
        assert c.app.state.recommndr.slots.challenger.fault.kind == "errors"  # type: ignore[attr-defined]
    monkeypatch.setenv("RECOMMNDR_FAULT_INJECTION", "false")
    get_settings.cache_clear()
    with _client(artifacts, tmp_path) as c:
        state = c.app.state.recommndr  # type: ignore[attr-defined]
        assert state.control.state["fault"]["kind"] == "errors" and state.slots.challenger.fault is None
        assert c.post("/models/traffic", json={"challenger": 1.0}, headers=auth()).status_code == 200
        assert {c.get(f"/recommendations/{u}?k=3").status_code for u in range(1, 41)} == {200}
