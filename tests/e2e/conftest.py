"""Fixtures of the browser tests: models trained on the tiny shop, the real API serving them and
the built storefront (``next start``) in front of it, each a subprocess on a free loopback port."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.servers import (
    ADMIN_PROXY_SOURCE,
    ADMIN_SECRET,
    FRONTEND,
    check_build,
    clean_env,
    running,
    wait_ok,
)
from tests.ports import free_port


@pytest.fixture(scope="session")
def api_url(artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``recommndr serve`` on the tiny shop, with its own event log and online store."""
    work = tmp_path_factory.mktemp("e2e-api")
    port = free_port()
    env = clean_env(
        RECOMMNDR_EVENT_LOG_DIR=str(work / "events"),
        RECOMMNDR_ONLINE_STORE_PATH=str(work / "online" / "features.db"),
        RECOMMNDR_RELOAD_INTERVAL_S="0",
    )
    cli = Path(sys.executable).with_name("recommndr")
    cmd = [str(cli), "serve", "--artifacts", str(artifacts), "--host", "127.0.0.1", "--port", str(port)]
    log = work / "api.log"
    with running(cmd, env=env, cwd=work, log=log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ok(f"{url}/ready", proc, log)
        yield url


@pytest.fixture(scope="session")
def storefront_url(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built storefront (``next start``) in front of the API, whose URL it reads at run time."""
    next_bin = check_build()
    work = tmp_path_factory.mktemp("e2e-next")
    port = free_port()
    env = clean_env(RECOMMNDR_API_URL=api_url)
    log = work / "next.log"
    cmd = [str(next_bin), "start", "-p", str(port), "-H", "127.0.0.1"]
    with running(cmd, env=env, cwd=FRONTEND, log=log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ok(f"{url}/api/ready", proc, log)  # the page server is up and its proxy reaches the API
        yield url


# ---- the ops page: an API with admin access and a challenger, and a storefront passing admin calls ----


@pytest.fixture(scope="session")
def ops_challenger(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second bundle (a smaller ranker; the champion's own bundle is no challenger to the API)."""
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import train

    out = tmp_path_factory.mktemp("e2e-ops-challenger") / "art"
    train(tiny_dataset, out, TrainConfig.model_validate({"ranker": {"n_estimators": 20}}))
    return out


@pytest.fixture(scope="session")
def ops_retrain_gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file whose creation lets the ops API's stand-in retrain print its outcome and end."""
    return tmp_path_factory.mktemp("e2e-ops-retrain") / "gate"


# the retrain the ops API starts (RECOMMNDR_LOOP_RETRAIN_COMMAND, the real command's stand-in): it
# says it trains, waits for the gate file, then prints a --json outcome naming its arguments
RETRAIN_SCRIPT = """import json, pathlib, sys, time
print("e2e retrain: training ...", file=sys.stderr, flush=True)
while not pathlib.Path(sys.argv[1]).exists():
    time.sleep(0.1)
print(json.dumps({"outcome": "promoted", "reason": "e2e: " + " ".join(sys.argv[2:]), "steps": [], "seconds": 2.0}))
"""


@pytest.fixture(scope="session")
def ops_api_url(
    artifacts: Path, ops_challenger: Path, ops_retrain_gate: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``recommndr serve`` with admin access on, a challenger loaded and the storefront's admin
    source address as its one trusted proxy; its control, canary, traffic and audit files in its
    own folder; retrains on, with a stand-in command (RETRAIN_SCRIPT)."""
    work = tmp_path_factory.mktemp("e2e-ops-api")
    port = free_port()
    retrain = [sys.executable, "-c", RETRAIN_SCRIPT, str(ops_retrain_gate)]
    env = clean_env(
        RECOMMNDR_EVENT_LOG_DIR=str(work / "events"),
        RECOMMNDR_ONLINE_STORE_PATH=str(work / "online" / "features.db"),
        RECOMMNDR_RELOAD_INTERVAL_S="0",
        RECOMMNDR_ADMIN_JWT_SECRET=ADMIN_SECRET,
        RECOMMNDR_CHALLENGER_ARTIFACTS_DIR=str(ops_challenger),
        RECOMMNDR_TRUSTED_PROXIES=f'["{ADMIN_PROXY_SOURCE}/32"]',
        RECOMMNDR_TRAFFIC_FILE=str(work / "serving" / "traffic.json"),
        RECOMMNDR_CONTROL_FILE=str(work / "serving" / "control.json"),
        RECOMMNDR_CANARY_FILE=str(work / "serving" / "canary.json"),
        RECOMMNDR_AUDIT_PATH=str(work / "audit.jsonl"),
        RECOMMNDR_LOOP_RETRAIN_DATA=str(work / "shop"),
        RECOMMNDR_LOOP_API_URL=f"http://127.0.0.1:{port}",
        RECOMMNDR_LOOP_RETRAIN_DIR=str(work / "retrain"),
        RECOMMNDR_LOOP_RETRAIN_COMMAND=json.dumps(retrain),
    )
    cli = Path(sys.executable).with_name("recommndr")
    cmd = [str(cli), "serve", "--artifacts", str(artifacts), "--host", "127.0.0.1", "--port", str(port)]
    log = work / "api.log"
    with running(cmd, env=env, cwd=work, log=log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ok(f"{url}/ready", proc, log)
        yield url


@pytest.fixture(scope="session")
def ops_storefront_url(ops_api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built storefront in front of that API, its admin route on (RECOMMNDR_ADMIN_PROXY) and
    calling the API from ADMIN_PROXY_SOURCE."""
    next_bin = check_build()
    work = tmp_path_factory.mktemp("e2e-ops-next")
    port = free_port()
    env = clean_env(RECOMMNDR_API_URL=ops_api_url, RECOMMNDR_ADMIN_PROXY=ADMIN_PROXY_SOURCE)
    log = work / "next.log"
    cmd = [str(next_bin), "start", "-p", str(port), "-H", "127.0.0.1"]
    with running(cmd, env=env, cwd=FRONTEND, log=log) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_ok(f"{url}/api/ready", proc, log)
        yield url
