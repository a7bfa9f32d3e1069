"""What starts the loop on Azure: the queue's messages, the orchestration's input from the
settings, one retrain at a time (the durable client here is a fake that records; the real one,
over HTTP, is in tests/unit/orchestrations/test_app.py)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recommndr.config import ConfigError, Settings, get_settings
from recommndr.errors import UserInputError
from recommndr.lifecycle import triggers
from recommndr.lifecycle.activities import LoopInput
from recommndr.lifecycle.canary import CanaryRules

pytestmark = pytest.mark.unit


@pytest.fixture
def loop_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "shop"
    data.mkdir()
    monkeypatch.setenv("RECOMMNDR_LOOP_DATA_DIR", str(data))
    monkeypatch.setenv("RECOMMNDR_LOOP_API_URL", "https://api.test")
    monkeypatch.setenv("RECOMMNDR_REGISTRY_URI", "sqlite:///tmp/mlflow.db")
    monkeypatch.setenv("RECOMMNDR_LOOP_WORKDIR", str(tmp_path / "loop"))
    monkeypatch.setenv(
        "RECOMMNDR_LOOP_RULES", '{"step_seconds": 600, "look_seconds": 30, "steps": [0.1, 1.0]}'
    )
    monkeypatch.delenv("WEBSITE_HOSTNAME", raising=False)
    get_settings.cache_clear()
    return data


# --- messages -----------------------------------------------------------------------------------
def test_a_message_names_its_action_reason_and_sender() -> None:
    r = triggers.parse_request(b'{"action": "rollback", "reason": "p95 over 300 ms", "by": "alertmanager"}')
    assert (r.action, r.reason, r.by, r.restore_champion) == (
        "rollback",
        "p95 over 300 ms",
        "alertmanager",
        False,
    )
    assert triggers.parse_request('{"action": "retrain"}').by == "queue"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"retrain", "must be JSON"),
        (b'{"action": "promote"}', "action"),
        (b'{"action": "retrain", "force": true}', "force"),
        (b'{"action": "rollback", "reason": ""}', "reason"),
        (b'{"action": "rollback", "reason": 5}', "reason"),
        ('{"action": "rollback", "reason": "' + "x" * 501 + '"}', "reason"),
        (b'{"action": "rollback", "restore_champion": "yes"}', "restore_champion"),
        (b"\xff\xfe", "must be JSON"),
        (b"[]", "must be JSON"),
    ],
)
def test_a_bad_message_is_refused_by_name(body: bytes | str, why: str) -> None:
    with pytest.raises(UserInputError, match=why):
        triggers.parse_request(body)


def test_a_message_over_the_queues_limit_is_refused_before_parsing() -> None:
    with pytest.raises(UserInputError, match="65537 bytes; at most 65536"):
        triggers.parse_request(b" " * (64 * 1024 + 1))


# --- the orchestration's input ------------------------------------------------------------------
def test_the_input_comes_from_the_settings(loop_env: Path, tmp_path: Path) -> None:
    cfg = triggers.loop_input(get_settings(), trigger="schedule", by="schedule", environ={})
    LoopInput.model_validate(cfg)  # what the activities read
    assert cfg["data"] == str(loop_env.resolve()) and cfg["api"] == "https://api.test"
    assert cfg["tracking_uri"] == "sqlite:///tmp/mlflow.db"
    assert cfg["out_root"] == str((tmp_path / "loop" / "bundles").resolve())
    assert cfg["audit_path"] == str(get_settings().audit_path.resolve())
    assert (cfg["trigger"], cfg["by"], cfg["fault"]) == ("schedule", "schedule", "none")
    # the rules given, the rest their defaults
    assert cfg["rules"] == {**CanaryRules().model_dump(mode="json"), "step_seconds": 600.0, "look_seconds": 30.0,
                            "steps": [0.1, 1.0]}  # fmt: skip


def test_on_azure_the_api_is_the_app_itself(loop_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECOMMNDR_LOOP_API_URL")
    get_settings.cache_clear()
    cfg = triggers.loop_input(
        get_settings(), "schedule", "schedule", environ={"WEBSITE_HOSTNAME": "shop.azurewebsites.net"}
    )
    assert cfg["api"] == "https://shop.azurewebsites.net"
    with pytest.raises(ConfigError, match="RECOMMNDR_LOOP_API_URL"):
        triggers.loop_input(get_settings(), "schedule", "schedule", environ={})


def test_a_missing_dataset_or_a_wrong_rule_names_the_setting(
    loop_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECOMMNDR_LOOP_DATA_DIR")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="RECOMMNDR_LOOP_DATA_DIR"):
        triggers.loop_input(get_settings(), "queue", "admin", environ={})
    assert triggers.loop_input(get_settings(), "queue", "admin", need_data=False, environ={})["data"] == ""
    monkeypatch.setenv("RECOMMNDR_LOOP_RULES", '{"step_seconds": -1}')
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match=r"RECOMMNDR_LOOP_RULES.*step_seconds"):
        triggers.loop_input(get_settings(), "queue", "admin", need_data=False, environ={})
    monkeypatch.setenv("RECOMMNDR_LOOP_RULES", '{"step_second": 60}')  # a typo is not ignored
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="step_second"):
        triggers.loop_input(get_settings(), "queue", "admin", need_data=False, environ={})


def test_the_loops_settings_may_live_in_a_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings refuses unknown RECOMMNDR_ names in .env: the loop's are its own fields."""
    (tmp_path / ".env").write_text(
        'RECOMMNDR_LOOP_DATA_DIR=shop\nRECOMMNDR_LOOP_RULES={"steps": [0.5, 1.0]}\n'
    )
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.loop_data_dir == Path("shop") and s.loop_rules == {"steps": [0.5, 1.0]}


def test_instance_ids_start_with_the_orchestrations_name_and_differ() -> None:
    ids = {triggers.new_instance_id("retrain") for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"retrain-\d{8}T\d{6}Z-[0-9a-f]{8}", i) for i in ids)


# --- starting -------------------------------------------------------------------------------------
class FakeClient:
    """The durable client's two calls, recorded; ``active`` are the instances it reports."""

    def __init__(self, active: list[tuple[str, str]] | None = None) -> None:
        self.active = active or []
        self.started: list[tuple[str, str | None, Any]] = []
        self.queries: list[dict[str, Any]] = []

    async def start_new(self, orchestration_function_name: str, instance_id: str | None = None,
                        client_input: Any = None) -> str:  # fmt: skip
        self.started.append((orchestration_function_name, instance_id, client_input))
        return instance_id or "generated"

    async def get_status_by(
        self, runtime_status: Any = None, instance_id_prefix: str | None = None
    ) -> list[Any]:
        self.queries.append(
            {"runtime_status": [s.value for s in runtime_status], "prefix": instance_id_prefix}
        )
        return [SimpleNamespace(instance_id=i, name=n) for i, n in self.active
                if i.startswith(instance_id_prefix or "")]  # fmt: skip


def test_a_retrain_starts_when_none_runs(loop_env: Path) -> None:
    client = FakeClient(active=[("rollback-1", "rollback")])
    request = triggers.LoopRequest(action="retrain", reason="weekly", by="schedule")
    out = asyncio.run(triggers.start(client, request, get_settings(), trigger="schedule"))
    ((name, iid, cfg),) = client.started
    assert name == "retrain" and iid is not None and iid.startswith("retrain-") and out["started"] == iid
    assert cfg == triggers.loop_input(get_settings(), "schedule", "schedule")
    assert client.queries == [{"runtime_status": ["Running", "Pending", "Suspended", "ContinuedAsNew"],
                               "prefix": "retrain-"}]  # fmt: skip


def test_a_second_retrain_is_not_started_beside_a_running_one(loop_env: Path) -> None:
    client = FakeClient(
        active=[("retrain-b", "retrain"), ("retrain-a", "retrain"), ("retrain-a-rollback", "rollback")]
    )
    request = triggers.LoopRequest(action="retrain", reason="drift", by="alertmanager")
    out = asyncio.run(triggers.start(client, request, get_settings(), trigger="queue"))
    assert client.started == []
    assert out == {"action": "retrain", "started": None, "running": "retrain-a",
                   "reason": "a retrain is still running (retrain-a)"}  # fmt: skip


def test_a_rollback_with_no_canary_running_starts_the_rollback_orchestration(loop_env: Path) -> None:
    client = FakeClient(active=[("retrain-a-rollback", "rollback")])  # a sub-orchestration is no retrain
    request = triggers.LoopRequest(
        action="rollback", reason="bad night", by="admin:ana", restore_champion=True
    )
    out = asyncio.run(triggers.start(client, request, get_settings(), trigger="queue"))
    ((name, iid, cfg),) = client.started
    assert name == "rollback" and iid is not None and iid.startswith("rollback-") and out["started"] == iid
    assert {k: cfg[k] for k in ("reason", "rule", "acute", "share", "restore_champion", "by", "trigger")} == {
        "reason": "bad night", "rule": "manual", "acute": True, "share": 0.0, "restore_champion": True,
        "by": "admin:ana", "trigger": "queue"}  # fmt: skip
    assert cfg["rules"]["look_seconds"] == 30.0  # the rollback's health checks wait on it
    assert cfg["instance_id"] == iid  # its audit entries name it (the rollback sets none itself)
