"""Activities against a scripted API (httpx answered in-process): what they refuse before any
traffic moves, and how a rollback step treats a challenger that is gone."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from recommndr.errors import RecommndrError
from recommndr.lifecycle import activities

pytestmark = pytest.mark.unit


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Answers by (method, path); every call recorded."""
    monkeypatch.setenv("RECOMMNDR_ADMIN_TOKEN", "t")
    world: dict[str, Any] = {"calls": [], "answers": {}}

    def request(method: str, url: str, **kw: Any) -> httpx.Response:
        path = url.split("://", 1)[1].split("/", 1)[1]
        world["calls"].append((method, "/" + path))
        status, body = world["answers"].get(
            (method, "/" + path), (404, {"error": {"code": "x", "message": "no"}})
        )
        return httpx.Response(status, json=body)

    monkeypatch.setattr(activities.httpx, "request", request)
    return world


CFG = {
    "api": "http://api.test",
    "challenger": {"model_version": "v2"},
    "load_timeout_s": 1.0,
    "fault": "none",
}


def test_a_canary_is_refused_while_the_control_is_paused_or_the_challenger_is_the_champion(
    api: dict[str, Any],
) -> None:
    api["answers"][("GET", "/models")] = (200, {"models": [{"variant": "champion", "version": "v1"},
                                                          {"variant": "challenger", "version": "v2"}]})  # fmt: skip
    api["answers"][("GET", "/models/control")] = (200, {"paused": True, "request": None, "fault": None})
    with pytest.raises(RecommndrError, match="paused"):
        activities.start_canary(dict(CFG))
    assert not [c for c in api["calls"] if c[0] == "POST"]  # nothing moved
    api["answers"][("GET", "/models")] = (200, {"models": [{"variant": "champion", "version": "v2"}]})
    with pytest.raises(RecommndrError, match="champion's own bundle"):
        activities.start_canary(dict(CFG))


def test_a_rollback_step_past_a_dropped_challenger_is_done_and_other_refusals_are_not(
    api: dict[str, Any], tmp_path: Any
) -> None:
    api["answers"][("POST", "/models/traffic")] = (
        409,
        {"error": {"code": "no_challenger", "message": "none loaded"}},
    )
    cfg = {**CFG, "audit_path": str(tmp_path / "a.jsonl"), "share": 0.25}
    assert activities.set_traffic({**cfg, "reason": "rollback: errors"})["no_challenger"] is True
    with pytest.raises(RecommndrError, match="409"):
        activities.set_traffic({**cfg, "reason": "canary step 2 of 4"})


def test_reads_are_retried_and_writes_are_not(api: dict[str, Any]) -> None:
    api["answers"][("GET", "/metrics")] = (503, {"error": {"code": "x", "message": "busy"}})
    with pytest.raises(RecommndrError, match="503"):
        activities.snapshot(dict(CFG))
    assert api["calls"].count(("GET", "/metrics")) == activities.GET_ATTEMPTS
    api["answers"][("POST", "/models/fault")] = (503, {"error": {"code": "x", "message": "busy"}})
    with pytest.raises(RecommndrError):
        activities._call(dict(CFG), "POST", "/models/fault", json={"kind": "none"})
    assert api["calls"].count(("POST", "/models/fault")) == 1


def test_a_registry_that_fails_is_said_to_fail_never_read_as_no_challenger(tmp_path: Any) -> None:
    """A corrupt MLflow database: reading an alias and moving one raise the registry's error,
    naming the registry, not "no challenger" and not an internal error."""
    bad = tmp_path / "mlflow.db"
    bad.write_text("not a database\n")
    cfg = {"tracking_uri": f"sqlite:///{bad}", "audit_path": str(tmp_path / "audit.jsonl")}
    with pytest.raises(
        activities.RegistryUnavailableError, match=r"mlflow\.db failed while reading the alias"
    ):
        activities.alias_versions(cfg, "challenger")
    with pytest.raises(activities.RegistryUnavailableError, match="moving the alias champion"):
        activities.move_alias(cfg, "champion", {"recommndr-ranker": "1"}, "test")
    assert not (tmp_path / "audit.jsonl").exists()  # nothing recorded for a move that did not happen


def test_a_registry_password_never_reaches_the_message() -> None:
    cfg = {"tracking_uri": "postgresql://mlflow:s3cret@db.example:5432/mlflow"}
    with pytest.raises(activities.RegistryUnavailableError) as caught, activities._registry(cfg, "reading"):
        raise RuntimeError("could not connect to postgresql://mlflow:s3cret@db.example:5432/mlflow")
    assert "s3cret" not in str(caught.value) and "postgresql://mlflow:***@db.example" in str(caught.value)


def test_each_drift_check_of_a_canary_tests_at_its_spent_share_of_the_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The k-th check that could be made tests at spent_alpha(drift_alpha, k); a look whose window
    was too small to check spends nothing; the flag's reason names the level."""
    from recommndr.lifecycle import canary
    from recommndr.monitoring.sequential import spent_alpha

    levels: list[float] = []
    answers = iter([None, {}, {}, {"feature": True}])

    def drift(cfg: dict[str, Any], variant: str, alpha: float) -> dict[str, Any] | None:
        levels.append(alpha)
        kinds = next(answers)
        return (
            None
            if kinds is None
            else {"kinds": kinds, "alpha": alpha, "features": sorted(kinds and ["item_log_price"])}
        )

    monkeypatch.setattr(activities, "snapshot", lambda cfg: canary.parse_metrics("", 1.0))
    monkeypatch.setattr(activities, "_control", lambda cfg: {})
    monkeypatch.setattr(activities, "_drift", drift)
    rules = canary.CanaryRules(alerts=False, drift_alpha=0.02).model_dump(mode="json")
    baseline = canary.parse_metrics("", 0.0)
    cfg: dict[str, Any] = {"rules": rules, "history": [], "baseline": baseline, "state": {}}
    for _ in range(4):
        out = activities.analyse(cfg)
        cfg = {**cfg, "history": out["history"], "state": out["state"]}
    # each of the check's four kinds at a quarter of the look's share
    assert levels == [spent_alpha(0.02, k) / 4 for k in (1, 1, 2, 3)]
    assert out["state"]["drift_checks"] == 3
    d = out["look"]["decision"]
    assert d["action"] == "rollback" and d["rule"] == "drift"
    assert (
        d["reason"] == f"drift check flagged feature (item_log_price) at level {spent_alpha(0.02, 3) / 4:.2g}"
    )


def test_the_canarys_feature_drift_counts_what_the_model_chose_not_who_its_shoppers_are(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Shopper-level quantities flagged on the challenger's window are reported, not acted on; a
    product feature flagged is acted on, unless the champion's window flags one too."""
    from recommndr.lifecycle import canary
    from recommndr.monitoring import drift, reference, watch

    flags: dict[str, list[str]] = {}

    def check(ref: Any, window: Any, alpha: float) -> dict[str, Any]:
        names = flags[window.arm]
        kinds = {"feature": bool(names), "score": False, "confidence": False, "validation": False}
        return {"kinds": kinds, "features": {n: {"drift": True} for n in names}}

    class Win:
        lists_seen = 100

        def __init__(self, arm: str) -> None:
            self.arm = arm

    monkeypatch.setenv("RECOMMNDR_ADMIN_TOKEN", "t")
    monkeypatch.setattr(drift, "check", check)
    monkeypatch.setattr(reference.Reference, "load", staticmethod(lambda path: None))
    monkeypatch.setattr(watch, "fetch_window", lambda api, arm, seconds, token: (Win(arm), None))
    monkeypatch.setattr(activities, "_reference", lambda cfg, arm: tmp_path)
    cfg = {"api": "http://api.test", "baseline": {"at": 0.0}}
    flags.update(challenger=["category", "user_days_since_last_log", "user_events_log"], champion=[])
    got = activities._drift(cfg, "challenger", 0.01)
    assert got is not None and not got["kinds"]["feature"] and got["features"] == []
    assert got["shopper_features"] == ["category", "user_days_since_last_log", "user_events_log"]
    g = canary.guards([canary.parse_metrics("", 0.0)] * 2, canary.CanaryRules(), "challenger", 0.0, got, [])
    assert not g["drift"]["breached"] and g["drift"]["shopper_features"] == got["shopper_features"]
    flags.update(challenger=["item_log_price", "user_events_log", "user_item_days_since_log"])
    got = activities._drift(cfg, "challenger", 0.01)
    assert got is not None and got["kinds"]["feature"]
    assert got["features"] == [
        "item_log_price",
        "user_item_days_since_log",
    ]  # what it showed whom moves these
    flags.update(champion=["als_score"])  # both arms: the clock or the shoppers moved, not the model
    got = activities._drift(cfg, "challenger", 0.01)
    assert got is not None and not got["kinds"]["feature"]
    assert set(canary.SHOPPER_EVENT_FIELDS) == {*drift.EVENT_NUMERIC, *drift.EVENT_CATEGORICAL}
    assert activities.DRIFT_KINDS == drift.KINDS
    from recommndr.ranking.features import FEATURES

    assert set(canary.SHOPPER_FEATURES) < set(FEATURES)
    assert canary.of_the_model("price_vs_user") and canary.of_the_model("from_als")


def test_traffic_steps_and_pauses_are_mlflow_runs_and_only_decisions_tag_the_versions(
    api: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recommndr.lifecycle import canary
    from recommndr.registry import tracking

    runs: list[dict[str, Any]] = []
    tags: list[tuple[str, str, str]] = []

    def log_experiment(name: str, kind: str, params: dict[str, Any], *a: Any, **kw: Any) -> tuple[str, str]:
        runs.append(params)
        return f"run{len(runs)}", "exp"

    class Client:
        def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
            tags.append((name, version, value))

    monkeypatch.setattr(tracking, "log_experiment", log_experiment)
    monkeypatch.setattr(activities, "_client", lambda cfg: Client())
    api["answers"][("POST", "/models/traffic")] = (200, {"traffic": {"champion": 0.75, "challenger": 0.25}})
    base = {**CFG, "audit_path": str(tmp_path / "a.jsonl"), "tracking_uri": "sqlite://",
            "challenger": {"model_version": "v2", "versions": {"recommndr-ranker": "2"}}}  # fmt: skip
    activities.set_traffic({**base, "share": 0.25, "reason": "canary step 2 of 4"})
    assert (
        runs[-1]["action"] == "traffic"
        and runs[-1]["reason"].startswith("challenger share 0.25")
        and not tags
    )

    controls = iter([{"paused": False}, {"paused": True}, {"paused": True}, {"paused": False}])
    monkeypatch.setattr(activities, "snapshot", lambda cfg: canary.parse_metrics("", 1.0))
    monkeypatch.setattr(activities, "_control", lambda cfg: next(controls))
    rules = canary.CanaryRules(alerts=False, drift=False).model_dump(mode="json")
    cfg: dict[str, Any] = {**base, "rules": rules, "history": [], "baseline": canary.parse_metrics("", 0.0),
                           "state": {}}  # fmt: skip
    for _ in range(4):
        out = activities.analyse(cfg)
        cfg = {**cfg, "history": out["history"], "state": out["state"]}
    assert [r["action"] for r in runs[1:]] == ["pause", "resume"] and not tags
    activities.record({**base, "action": "rollback", "reason": "errors"})
    assert tags == [("recommndr-ranker", "2", "rollback: errors")]
