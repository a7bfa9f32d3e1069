"""The canary's operator endpoints: pause, promote, rollback and fault recorded in the shared
control state and the audit trail under the token's subject, the workflow's progress document,
the live per-variant figures with their mSPRT, the audit trail's view, and every refusal."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.monitoring.sequential import msprt
from recommndr.serving.app import create_app
from recommndr.serving.control import MAX_CONTROL_BYTES, ControlState, parse
from recommndr.serving.routes.canary import MAX_CANARY_BYTES

pytestmark = pytest.mark.unit
SECRET = "test-admin-key-0123456789abcdef0123"
SUB = "ops@example.invalid"


def auth(sub: str = SUB) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": sub, "iss": "recommndr", "aud": "recommndr-admin", "iat": now, "exp": now + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
def env(challenger_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", SECRET)
    monkeypatch.setenv("RECOMMNDR_CHALLENGER_ARTIFACTS_DIR", str(challenger_artifacts))
    monkeypatch.setenv("RECOMMNDR_FAULT_INJECTION", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def client(artifacts: Path, tmp: Path, ip: str = "127.0.0.1") -> TestClient:
    return TestClient(create_app(artifacts, tmp / "events"), client=(ip, 50000))


# every new admin operation, with a valid body
OPERATIONS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/models/control", None),
    ("POST", "/models/pause", {"paused": True, "reason": "x"}),
    ("POST", "/models/promote", {"reason": "x"}),
    ("POST", "/models/fault", {"kind": "none"}),
    ("PUT", "/models/canary", {"instance_id": "i", "status": "canary"}),
    ("GET", "/models/canary", None),
    ("GET", "/models/audit", None),
]


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS)
def test_every_operation_is_admin_only(
    env: None, artifacts: Path, tmp_path: Path, method: str, path: str, body: dict[str, Any] | None
) -> None:
    with client(artifacts, tmp_path) as c:
        r = c.request(method, path, json=body)
        assert r.status_code == 401 and "bearer token is required" in r.json()["error"]["message"]
    with client(artifacts, tmp_path, ip="10.9.8.7") as c:
        r = c.request(method, path, json=body, headers=auth())
        assert r.status_code == 403 and "10.9.8.7 is not allowed" in r.json()["error"]["message"]
    assert not get_settings().audit_path.exists()  # nothing was recorded


def test_pause_promote_and_rollback_are_recorded_for_the_workflow_and_audited(
    env: None, artifacts: Path, tmp_path: Path
) -> None:
    with client(artifacts, tmp_path) as c:
        assert c.get("/models/control", headers=auth()).json() == {"paused": False, "request": None,
                                                                    "fault": None}  # fmt: skip
        r = c.post("/models/pause", json={"paused": True, "reason": "looking at the CTR"}, headers=auth())
        assert r.status_code == 200, r.json()
        assert r.json()["control"]["paused"] is True
        assert r.json()["audit"]["action"] == "pause" and r.json()["audit"]["by"] == SUB
        r = c.post("/models/pause", json={"paused": False}, headers=auth("oncall"))
        assert r.json()["control"]["paused"] is False and r.json()["audit"]["action"] == "resume"
        version = c.get("/models").json()["models"][1]["version"]
        before = time.time()
        r = c.post("/models/promote", json={"reason": "looks good"}, headers=auth())
        assert r.status_code == 200, r.json()
        req = r.json()["control"]["request"]
        assert req["action"] == "promote" and req["by"] == SUB and req["reason"] == "looks good"
        assert len(req["id"]) == 32 and before <= req["at"] <= time.time()
        assert r.json()["audit"]["details"] == {"challenger": version, "request": req["id"]}
        assert c.get("/models/control", headers=auth()).json()["request"] == req
        c.post("/models/traffic", json={"challenger": 0.3}, headers=auth())
        r = c.post("/models/rollback", json={"reason": "CTR dropped"}, headers=auth("oncall"))
        assert r.status_code == 200 and r.json()["traffic"]["challenger"] == 0.0  # at once
        back = r.json()["control"]["request"]
        assert back["action"] == "rollback" and back["by"] == "oncall" and back["id"] != req["id"]
        audit = c.get("/models/audit", headers=auth()).json()
        assert audit["verified"] is True
        assert [(e["action"], e["by"]) for e in audit["entries"]] == [
            ("pause", SUB), ("resume", "oncall"), ("promote", SUB), ("traffic", SUB), ("rollback", "oncall"),
        ]  # fmt: skip
        assert audit["entries"][3]["details"] == {"challenger": 0.3, "previous": 0.0, "shared": True}
        assert audit["entries"][4]["details"] == {"challenger": 0.3, "request": back["id"]}
        assert audit["entries"][4]["reason"] == "CTR dropped"
        page = c.get("/models/audit?after=3&limit=1", headers=auth()).json()["entries"]
        assert [e["seq"] for e in page] == [4]
    # the state outlives the process (the next worker or a restart reads it)
    with client(artifacts, tmp_path) as c:
        assert c.get("/models/control", headers=auth()).json()["request"]["action"] == "rollback"


def test_a_tampered_trail_answers_unverified(env: None, artifacts: Path, tmp_path: Path) -> None:
    with client(artifacts, tmp_path) as c:
        for paused in (True, False, True):
            c.post("/models/pause", json={"paused": paused, "reason": "r"}, headers=auth())
        path = get_settings().audit_path
        lines = path.read_text().splitlines()
        first = json.loads(lines[0])
        first["by"] = "somebody else"
        path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
        body = c.get("/models/audit", headers=auth()).json()
        assert body["verified"] is False and body["entries"][0]["by"] == "somebody else"
        path.write_text('{"seq": "one"}\n')  # not an entry at all: a clear 503, not a 500
        r = c.get("/models/audit", headers=auth())
        assert r.status_code == 503 and r.json()["error"]["code"] == "audit_unavailable"


def test_refusals(env: None, artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with client(artifacts, tmp_path) as c:
        for path, body in (
            ("/models/fault", {"kind": "melt"}),
            ("/models/fault", {}),
            ("/models/pause", {"paused": "yes"}),
            ("/models/pause", {"paused": True, "reason": "x" * 501}),
            ("/models/promote", {"reason": "x", "force": True}),
        ):
            r = c.post(path, json=body, headers=auth())
            assert r.status_code == 422, (path, body, r.json())
        for query in ("limit=0", "limit=501", "after=-1", "after=x"):
            assert c.get(f"/models/audit?{query}", headers=auth()).status_code == 422
        for query in ("tau=0", "tau=2", "alpha=0", "alpha=0.9"):
            assert c.get(f"/models/canary?{query}", headers=auth()).status_code == 422
    monkeypatch.setenv("RECOMMNDR_FAULT_INJECTION", "false")
    get_settings.cache_clear()
    with client(artifacts, tmp_path) as c:
        for kind in ("errors", "none"):
            r = c.post("/models/fault", json={"kind": kind}, headers=auth())
            assert r.status_code == 403 and r.json()["error"]["code"] == "fault_injection_disabled"
    monkeypatch.setenv("RECOMMNDR_FAULT_INJECTION", "true")
    monkeypatch.delenv("RECOMMNDR_CHALLENGER_ARTIFACTS_DIR")
    get_settings.cache_clear()
    with client(artifacts, tmp_path) as c:  # no challenger loaded
        for path, body in (("/models/promote", {"reason": "x"}), ("/models/fault", {"kind": "random"})):
            r = c.post(path, json=body, headers=auth())
            assert r.status_code == 409 and r.json()["error"]["code"] == "no_challenger", r.json()
        assert c.post("/models/fault", json={"kind": "none"}, headers=auth()).status_code == 200
        assert c.get("/models/control", headers=auth()).json()["request"] is None


def test_the_progress_document_is_stored_as_sent_and_bounded(
    env: None, artifacts: Path, tmp_path: Path
) -> None:
    doc = {"instance_id": "abc123", "status": "canary", "step": 2, "steps": [0.05, 0.25, 0.5, 1.0],
           "share": 0.25, "looks": [{"at": "2026-12-01T10:00:00Z", "ctr": {"diff": -0.002}}],
           "big": 2**70, "title": "Kaffee ☕"}  # fmt: skip
    with client(artifacts, tmp_path) as c:
        assert c.get("/models/canary", headers=auth()).json()["canary"] is None
        r = c.put("/models/canary", json=doc, headers=auth())
        assert r.status_code == 200 and r.json() == {"stored": True}
        assert c.get("/models/canary", headers=auth()).json()["canary"] == doc
        assert json.loads(get_settings().canary_file.read_text()) == doc
        bad: list[bytes] = [
            b"{not json", b"[1, 2]", b'"canary"', b'{"status": "canary"}',
            b'{"instance_id": "", "status": "canary"}', b'{"instance_id": "i", "status": 3}',
            b'{"instance_id": "i", "status": "canary", "x": NaN}',
            b'{"instance_id": "i", "status": "canary", "x": 1e999}',
            b'{"instance_id": "i", "status": "canary", "x": "\\ud800"}',
            b'{"instance_id": "' + b"i" * 257 + b'", "status": "canary"}',
            b"[" * 30_000 + b"]" * 30_000,
            b"\xff\xfe",
        ]  # fmt: skip
        for body in bad:
            r = c.put("/models/canary", content=body, headers={**auth(), "content-type": "application/json"})
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request", (
                body[:60],
                r.json(),
            )
        pad = {**doc, "pad": "x" * MAX_CANARY_BYTES}
        r = c.put("/models/canary", json=pad, headers=auth())
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

        def streamed() -> Iterator[bytes]:  # no Content-Length: the size is counted
            yield b'{"instance_id": "i", "status": "canary", "pad": "'
            for _ in range(3):
                yield b"x" * 30_000
            yield b'"}'

        r = c.put(
            "/models/canary", content=streamed(), headers={**auth(), "content-type": "application/json"}
        )
        assert r.status_code == 413
        assert c.get("/models/canary", headers=auth()).json()["canary"] == doc  # unchanged
        get_settings().canary_file.write_text("[garbage")  # a damaged file: no canary, not a 500
        assert c.get("/models/canary", headers=auth()).json()["canary"] is None


def test_the_canary_view_counts_each_variant_and_runs_the_msprt(
    env: None, artifacts: Path, tmp_path: Path
) -> None:
    with client(artifacts, tmp_path) as c:
        state = c.app.state.recommndr  # type: ignore[attr-defined]
        assert c.post("/models/traffic", json={"challenger": 0.5}, headers=auth()).status_code == 200
        seen: dict[str, list[tuple[int, int]]] = {"champion": [], "challenger": []}
        for u in range(1, 121):
            r = c.get(f"/recommendations/{u}?k=5").json()
            seen[r["variant"]].append((u, r["items"][0]["item_id"]))
        events = []
        for variant, served in seen.items():
            for i, (u, item) in enumerate(served):  # every list viewed; the champion's first 8 bought
                events.append({"user_id": u, "item_id": item, "event_type": "view", "variant": variant})
                if variant == "champion" and i < 8:
                    events.append(
                        {"user_id": u, "item_id": item, "event_type": "purchase", "variant": variant}
                    )
        assert c.post("/events", json=events).status_code == 202
        body = c.get("/models/canary?tau=0.01&alpha=0.1", headers=auth()).json()
        assert body["traffic"] == {"champion": 0.5, "challenger": 0.5}
        assert body["control"] == state.control.state
        n0, n1 = len(seen["champion"]), len(seen["challenger"])
        champion, challenger = body["variants"]["champion"], body["variants"]["challenger"]
        assert champion == {"lists": n0, "views": n0, "carts": 0, "purchases": 8, "requests": n0, "errors": 0,
                            "ctr": 1.0, "atc": 0.0, "cvr": 8 / n0}  # fmt: skip
        assert challenger["lists"] == challenger["views"] == challenger["requests"] == n1
        assert challenger["purchases"] == 0 and challenger["cvr"] == 0.0
        theta, lr, lo, hi = msprt(8, n0, 0, n1, 0.01, 0.1)
        assert body["difference"]["cvr"] == pytest.approx(
            {"estimate": theta, "ci_low": lo, "ci_high": hi, "p_value": min(1.0, 1 / lr)}
        )
        assert body["difference"]["cvr"]["estimate"] < 0 and body["difference"]["tau"] == 0.01
        assert body["difference"]["ctr"]["estimate"] == 0.0
        # views past the lists served are no Bernoulli trial: no difference rather than a wrong one
        extra = [{"user_id": seen["champion"][0][0], "item_id": seen["champion"][0][1], "event_type": "view",
                  "variant": "champion"}] * 5  # fmt: skip
        c.post("/events", json=extra)
        assert c.get("/models/canary", headers=auth()).json()["difference"]["ctr"] is None


def test_control_is_shared_by_two_workers_through_the_file(
    env: None, artifacts: Path, tmp_path: Path
) -> None:
    with client(artifacts, tmp_path) as a, client(artifacts, tmp_path) as b:
        other = b.app.state.recommndr  # type: ignore[attr-defined]
        assert a.post("/models/pause", json={"paused": True}, headers=auth()).status_code == 200
        assert a.post("/models/fault", json={"kind": "slow"}, headers=auth()).status_code == 200
        deadline = time.monotonic() + 10
        while other.slots.challenger.fault is None:  # b's own background sync, no request to b
            assert time.monotonic() < deadline, "the other worker did not pick up the fault"
            time.sleep(0.1)
        assert other.control.state["paused"] is True and other.slots.challenger.fault.kind == "slow"
        assert other.slots.champion.fault is None  # never the champion
        # both change the state at once: each change lands (a read-modify-write under a lock)
        b.post("/models/promote", json={"reason": "from b"}, headers=auth())
        got = a.get("/models/control", headers=auth()).json()
        assert (
            got["paused"] is True and got["fault"]["kind"] == "slow" and got["request"]["reason"] == "from b"
        )
        assert b.post("/models/fault", json={"kind": "none"}, headers=auth()).status_code == 200
        deadline = time.monotonic() + 10
        while a.app.state.recommndr.slots.challenger.fault is not None:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the fault was not turned off on the other worker"
            time.sleep(0.1)


def test_a_hostile_control_file_is_logged_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "control.json"
    a, b = ControlState(path), ControlState(path)
    a.update(lambda s: {**s, "paused": True})
    assert b.sync() is True and b.state["paused"] is True
    good = dict(b.state)
    for content in (
        b"{",
        b"[]",
        b'{"paused": "yes"}',
        b'{"request": {"action": "delete everything", "id": "1", "by": "x", "reason": "", "at": 1}}',
        b'{"request": {"action": "promote", "id": 1, "by": "x", "reason": "", "at": 1}}',
        b'{"fault": {"kind": "errors", "since": "now"}}',
        b'{"fault": {"kind": "errors", "since": 1e999}}',
        b'{"fault": {"kind": "errors", "since": 1, "version": "' + b"v" * 300 + b'"}}',
        b'{"x": "' + b"y" * MAX_CONTROL_BYTES + b'"}',
        b"[" * 50_000,
    ):
        path.write_bytes(content)
        with caplog.at_level(logging.ERROR, logger="recommndr.serving.control"):
            caplog.clear()
            assert b.sync() is False
        assert b.state == good, content[:60]
        assert "ignoring the control file" in caplog.text
    # a change replaces the bad file, starting from the last good state
    new = b.update(lambda s: {**s, "request": {"id": "r1", "action": "rollback", "by": "me", "reason": "x",
                                               "at": 1.0}})  # fmt: skip
    assert new["paused"] is True and a.sync() and a.state == new


def test_two_writes_in_one_clock_tick_are_both_seen(tmp_path: Path) -> None:
    path = tmp_path / "control.json"
    a, b = ControlState(path), ControlState(path)
    for i in range(30):
        a.update(lambda s, i=i: {**s, "paused": i % 2 == 0})  # type: ignore[misc]
        b.sync()
        assert b.state["paused"] == (i % 2 == 0)


def test_parse_keeps_only_known_fields() -> None:
    doc = {"paused": True, "other": 1, "fault": {"kind": "drift", "since": 5, "version": "v1", "x": 2}}
    assert parse(doc) == {"paused": True, "request": None,
                          "fault": {"kind": "drift", "since": 5.0, "version": "v1"}}  # fmt: skip


def test_a_path_with_two_methods_allows_both(env: None, artifacts: Path, tmp_path: Path) -> None:
    with client(artifacts, tmp_path) as c:
        r = c.request("OPTIONS", "/models/canary", headers=auth())
        assert r.status_code == 405 and r.headers["allow"] == "GET, PUT"
        r = c.delete("/models/traffic")
        assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_changes_at_once_from_several_threads_all_land(tmp_path: Path) -> None:
    """Each change reads the file's state and writes it back: without the lock two changes read
    the same state and one is lost (a count kept in the request's reason shows it)."""
    path = tmp_path / "control.json"

    def bump(s: dict[str, Any]) -> dict[str, Any]:
        n = int(s["request"]["reason"]) if s["request"] else 0
        return {**s, "request": {"id": "r", "action": "promote", "by": "t", "reason": str(n + 1), "at": 1.0}}

    def work() -> None:
        mine = ControlState(path)  # a worker's own copy, as each process has
        for _ in range(50):
            mine.update(bump)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = ControlState(path)
    reader.sync()
    assert reader.state["request"]["reason"] == "200"
