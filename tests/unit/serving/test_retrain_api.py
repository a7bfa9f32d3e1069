"""POST/GET /models/retrain: off unless configured, admin only, the fault validated, one retrain at a
time as a real subprocess (the command replaced by a small Python script through the test-only
setting, which gets the same arguments), its outcome, its failure, its bounded log, and its stop
when the API shuts down. The API here loads no model: these endpoints need none."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.serving.app import create_app
from recommndr.serving.retrain import LOG, OWNER_ENV, STATE, RetrainRunner, stop_when_owner_dies
from tests.unit.serving.test_canary_admin import SECRET, SUB, auth

pytestmark = pytest.mark.unit
API = "http://127.0.0.1:8123"


def script(tmp: Path, body: str) -> str:
    """The retrain stand-in: its arguments in ``args.json``, then ``body``; ``gate`` (a file it
    waits for) lets the test say when it ends."""
    return (
        "import json, sys, time, pathlib\n"
        f"tmp = pathlib.Path({str(tmp)!r})\n"
        "(tmp / 'args.json').write_text(json.dumps(sys.argv[1:]))\n"
        "def wait():\n"
        "    while not (tmp / 'gate').exists():\n"
        "        time.sleep(0.05)\n" + body
    )


FINISHES = (
    "print('training ...', file=sys.stderr, flush=True)\n"
    "wait()\n"
    "print(json.dumps({'outcome': 'rolled_back', 'reason': 'errors 9 % > 5 %', 'steps': [{'step': 'canary'}],"
    " 'seconds': 1.0}))\n"
)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("RECOMMNDR_ADMIN_JWT_SECRET", SECRET)
    monkeypatch.setenv("RECOMMNDR_LOOP_RETRAIN_DIR", str(tmp_path / "retrain"))

    def configure(body: str | None = FINISHES, **extra: str) -> TestClient:
        if body is not None:
            monkeypatch.setenv("RECOMMNDR_LOOP_RETRAIN_DATA", str(tmp_path / "shop"))
            monkeypatch.setenv("RECOMMNDR_LOOP_API_URL", API)
            monkeypatch.setenv(
                "RECOMMNDR_LOOP_RETRAIN_COMMAND", json.dumps([sys.executable, "-c", script(tmp_path, body)])
            )
        for k, v in extra.items():
            monkeypatch.setenv(f"RECOMMNDR_{k}", v)
        get_settings.cache_clear()
        return TestClient(create_app(tmp_path / "no-model", tmp_path / "events"), client=("127.0.0.1", 50000))

    yield configure
    get_settings.cache_clear()


def until(c: TestClient, state: str, log: str = "", timeout: float = 30.0) -> dict[str, Any]:
    """GET /models/retrain until it says ``state`` (and its log tail holds ``log``)."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = c.get("/models/retrain", headers=auth()).json()
        if (body["state"] == state and log in body["log_tail"]) or time.monotonic() > deadline:
            assert body["state"] == state and log in body["log_tail"], body
            return body
        time.sleep(0.05)


def test_off_by_default_refused_and_said(setup: Any) -> None:
    with setup(None) as c:
        r = c.post("/models/retrain", json={}, headers=auth())
        assert r.status_code == 409 and r.json()["error"]["code"] == "retrain_off", r.json()
        assert "RECOMMNDR_LOOP_RETRAIN_DATA" in r.json()["error"]["message"]
        body = c.get("/models/retrain", headers=auth()).json()
        assert body["state"] == "off" and "RECOMMNDR_LOOP_RETRAIN_DATA" in body["detail"]
    assert not get_settings().loop_retrain_dir.exists()  # nothing ran, nothing written


def test_without_its_own_url_it_stays_off(setup: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOMMNDR_LOOP_RETRAIN_DATA", "data/demo")
    with setup(None) as c:
        r = c.post("/models/retrain", headers=auth())
        assert r.status_code == 409 and "RECOMMNDR_LOOP_API_URL" in r.json()["error"]["message"]


def test_admin_only(setup: Any) -> None:
    with setup() as c:
        for method in ("GET", "POST"):
            r = c.request(method, "/models/retrain")
            assert r.status_code == 401, r.json()
    with TestClient(setup().app, client=("10.9.8.7", 50000)) as outside:
        for method in ("GET", "POST"):
            r = outside.request(method, "/models/retrain", headers=auth())
            assert r.status_code == 403 and "10.9.8.7 is not allowed" in r.json()["error"]["message"]
    assert not get_settings().loop_retrain_dir.exists()


@pytest.mark.parametrize(
    "body", [{"canary_fault": "meltdown"}, {"canary_fault": 1}, {"canary_fault": "none", "data": "/etc"}, []]
)
def test_a_bad_body_is_a_422(setup: Any, body: Any) -> None:
    with setup() as c:
        r = c.post("/models/retrain", json=body, headers=auth())
        assert r.status_code == 422, r.json()
        assert c.get("/models/retrain", headers=auth()).json()["state"] == "idle"


def test_a_fault_needs_fault_injection(setup: Any) -> None:
    with setup() as c:
        r = c.post("/models/retrain", json={"canary_fault": "errors"}, headers=auth())
        assert r.status_code == 403 and r.json()["error"]["code"] == "fault_injection_disabled"


def test_one_runs_a_second_is_refused_and_the_outcome_is_kept(setup: Any, tmp_path: Path) -> None:
    with setup(FAULT_INJECTION="true", LOOP_RETRAIN_STEP_SECONDS="20") as c:
        assert c.get("/models/retrain", headers=auth()).json()["state"] == "idle"
        before = time.time()
        r = c.post("/models/retrain", json={"canary_fault": "errors"}, headers=auth())
        assert r.status_code == 200, r.json()
        assert r.json()["state"] == "running" and r.json()["canary_fault"] == "errors"
        assert r.json()["started_at"] >= before and r.json()["outcome"] is None
        second = c.post("/models/retrain", json={}, headers=auth())
        assert second.status_code == 409 and second.json()["error"]["code"] == "retrain_running", (
            second.json()
        )
        # its command line: the settings' URL, dataset and steps, and the validated fault only
        deadline = time.monotonic() + 30
        while not (tmp_path / "args.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert json.loads((tmp_path / "args.json").read_text()) == [
            "retrain", "--local", "--api", API, "--data", str(tmp_path / "shop"), "--json",
            "--canary-fault", "errors", "--step-seconds", "20",
        ]  # fmt: skip
        until(c, "running", log="training ...\n")
        (tmp_path / "gate").touch()
        done = until(c, "finished")
        assert done["outcome"] == {"outcome": "rolled_back", "reason": "errors 9 % > 5 %",
                                   "steps": [{"step": "canary"}], "seconds": 1.0}  # fmt: skip
        assert done["returncode"] == 0 and done["finished_at"] >= done["started_at"]
        entries = [json.loads(line) for line in get_settings().audit_path.read_text().splitlines()]
        assert [(e["action"], e["by"], e["details"]) for e in entries] == [
            ("retrain", SUB, {"fault": "errors"})
        ]
        # when it has ended, another may start
        (tmp_path / "gate").unlink()
        assert c.post("/models/retrain", headers=auth()).json()["state"] == "running"
        (tmp_path / "gate").touch()
        assert until(c, "finished")["canary_fault"] == "none"


def test_an_exit_without_an_outcome_is_a_failure_with_its_log(setup: Any) -> None:
    with setup("print('error: the registry is locked', file=sys.stderr)\nsys.exit(3)\n") as c:
        assert c.post("/models/retrain", headers=auth()).status_code == 200
        failed = until(c, "failed")
        assert failed["returncode"] == 3 and failed["outcome"] is None and "exited with 3" in failed["detail"]
        assert "error: the registry is locked" in failed["log_tail"]


def test_the_log_is_bounded_and_the_outcome_still_read(setup: Any, tmp_path: Path) -> None:
    noisy = "for i in range(20000):\n    print('x' * 100, i, file=sys.stderr)\n" + FINISHES.replace(
        "wait()\n", ""
    )
    with setup(noisy, LOOP_RETRAIN_LOG_BYTES="65536") as c:
        c.post("/models/retrain", headers=auth())
        done = until(c, "finished")
    assert done["outcome"]["outcome"] == "rolled_back"
    assert len(done["log_tail"].encode()) <= 4096 and done["log_tail"].splitlines()[-1].startswith(
        '{"outcome"'
    )
    folder = tmp_path / "retrain"
    assert sum(p.stat().st_size for p in folder.glob(f"{LOG}*")) <= 65536


def test_a_shutdown_of_the_api_stops_a_running_retrain(setup: Any, tmp_path: Path) -> None:
    with setup("wait()\n") as c:
        assert c.post("/models/retrain", headers=auth()).json()["state"] == "running"
        pid = json.loads((tmp_path / "retrain" / STATE).read_text())["pid"]
        os.kill(pid, 0)  # running
    doc = json.loads((tmp_path / "retrain" / STATE).read_text())
    assert doc["state"] == "failed" and doc["returncode"] == -15, doc
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_retrain_whose_api_went_away_is_failed_and_another_may_start(setup: Any, tmp_path: Path) -> None:
    folder = tmp_path / "retrain"
    folder.mkdir()
    dead = 2**22 + 12345  # above Linux's pid_max default: no such process
    (folder / STATE).write_text(json.dumps({"state": "running", "started_at": 1.0, "pid": dead, "owner": dead,
                                            "canary_fault": "none"}))  # fmt: skip
    with setup() as c:
        lost = c.get("/models/retrain", headers=auth()).json()
        assert lost["state"] == "failed" and lost["detail"] == "the API process that ran it stopped"
        assert c.post("/models/retrain", headers=auth()).json()["state"] == "running"
        (tmp_path / "gate").touch()
        until(c, "finished")


def test_the_real_command_is_the_default() -> None:
    s = get_settings().model_copy(update={"loop_api_url": API, "loop_retrain_data": Path("data/demo")})
    assert RetrainRunner(s).command("slow") == [sys.executable, "-m", "recommndr.cli", "retrain", "--local",
                                                "--api", API, "--data", "data/demo", "--json", "--canary-fault",
                                                "slow"]  # fmt: skip


def test_openapi_declares_the_answers(setup: Any) -> None:
    with setup(None) as c:
        paths = c.get("/openapi.json").json()["paths"]["/models/retrain"]
    assert set(paths["post"]["responses"]) == {"200", "401", "403", "409", "422", "503"}
    assert set(paths["get"]["responses"]) == {"200", "401", "403", "422"}
    body = paths["post"]["requestBody"]
    assert body.get("required", False) is False


def test_the_retrain_is_told_its_owner(setup: Any, tmp_path: Path) -> None:
    body = f"(tmp / 'owner').write_text(__import__('os').environ.get({OWNER_ENV!r}, ''))\nwait()\n"
    with setup(body) as c:
        c.post("/models/retrain", headers=auth())
        deadline = time.monotonic() + 20
        while not (tmp_path / "owner").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "owner").read_text() == str(os.getpid())
        (tmp_path / "gate").touch()


def test_a_retrain_whose_api_is_killed_outright_stops_itself(tmp_path: Path) -> None:
    """The owner SIGKILLed: its retrain notices (re-parented) and gets SIGTERM; while the owner
    lives, nothing happens."""
    child = (
        "import pathlib, signal, sys, time\n"
        f"out = pathlib.Path({str(tmp_path)!r})\n"
        "signal.signal(signal.SIGTERM, lambda *a: (out.joinpath('stopped').write_text('x'), sys.exit(0)))\n"
        "from recommndr.serving.retrain import stop_when_owner_dies\n"
        "stop_when_owner_dies(0.05)\n"
        "out.joinpath('watching').write_text('x')\n"
        "time.sleep(60)\n"
    )
    owner = (
        "import os, subprocess, sys, time\n"
        f"env = {{**os.environ, {OWNER_ENV!r}: str(os.getpid())}}\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}], env=env, start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", owner])
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "watching").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert (tmp_path / "watching").exists() and not (tmp_path / "stopped").exists()
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while not (tmp_path / "stopped").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "stopped").exists()


def test_without_an_owner_nothing_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OWNER_ENV, raising=False)
    assert stop_when_owner_dies() is None
    monkeypatch.setenv(OWNER_ENV, "not-a-pid")
    assert stop_when_owner_dies() is None
    monkeypatch.setenv(OWNER_ENV, str(os.getpid()))  # alive, but not this process' parent: a wrapper
    assert stop_when_owner_dies() is None


def test_sigterm_interrupts_a_command_once_and_its_clean_up_survives_a_second() -> None:
    import subprocess

    code = (
        "import os, signal, time\n"
        "from recommndr.cli import _sigterm_interrupts\n"
        "_sigterm_interrupts()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(5)\n"
        "except KeyboardInterrupt:\n"
        "    os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.3)  # the clean-up, hit again\n"
        "    print('cleaned up')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "cleaned up", out.stderr
