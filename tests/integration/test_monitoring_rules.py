"""infra/monitoring checked by Prometheus' own tools: the configuration and rules load
(``promtool check``), Alertmanager's configuration loads (``amtool check-config``), and every alert
rule's unit tests pass (``promtool test rules infra/monitoring/tests/*.yml``) — and every alert has
tests that show it firing and staying silent, and the labels and annotations the canary reads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring_stack import MONITORING, SHORT_DURATIONS, durations_in

pytestmark = pytest.mark.integration
RULES = MONITORING / "rules"
UNIT_TESTS = sorted((MONITORING / "tests").glob("*.yml"))


def _tool(name: str) -> str:
    exe = shutil.which(name)
    assert exe, f"{name} is missing: `make setup` installs Debian's prometheus and prometheus-alertmanager"
    return exe


def _run(*cmd: str | Path) -> str:
    """The tool's output (stdout and stderr) once it has succeeded."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, f"{' '.join(str(c) for c in cmd)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def _alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load((RULES / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _rule_count(path: Path) -> int:
    return sum(len(g["rules"]) for g in yaml.safe_load(path.read_text())["groups"])


def test_prometheus_configuration_and_rules_load() -> None:
    out = _run(_tool("promtool"), "check", "config", MONITORING / "prometheus.yml")
    # the configuration's own rule files are found and read, every rule of them
    for name in ("recording.yml", "alerts.yml"):
        assert f"SUCCESS: {_rule_count(RULES / name)} rules found" in out, out
    out = _run(_tool("promtool"), "check", "rules", RULES / "recording.yml", RULES / "alerts.yml")
    assert out.count("SUCCESS") == 2 and _rule_count(RULES / "alerts.yml") >= 17, out


def test_alertmanager_configuration_loads() -> None:
    out = _run(_tool("amtool"), "check-config", MONITORING / "alertmanager.yml")
    assert "SUCCESS" in out and " 1 receivers" in out, out
    [receiver] = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())["receivers"]
    assert [w["url"].endswith("/alerts/webhook") for w in receiver["webhook_configs"]] == [True]


def test_every_alert_rule_unit_test_passes() -> None:
    assert UNIT_TESTS, "no promtool unit tests in infra/monitoring/tests"
    _run(_tool("promtool"), "test", "rules", *UNIT_TESTS)


def test_every_alert_is_shown_firing_and_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fired == set(), f"alerts with no test that fires them: {sorted(names - fired)}"
    assert names - silent == set(), f"alerts with no test where they stay silent: {sorted(names - silent)}"


def test_every_alert_carries_what_the_canary_reads() -> None:
    for rule in _alerts():
        name, labels, notes = rule["alert"], rule.get("labels", {}), rule.get("annotations", {})
        assert labels.get("severity") in {"critical", "warning"}, name
        assert labels.get("component"), name
        assert {"summary", "description", "action", "value", "threshold"} <= set(notes), name
        assert notes["action"] in {"rollback", "investigate"}, name


def test_every_duration_in_the_rules_can_be_shortened_for_the_live_test() -> None:
    for path in (RULES / "recording.yml", RULES / "alerts.yml"):
        unknown = durations_in(path.read_text()) - set(SHORT_DURATIONS)
        assert not unknown, f"{path.name} uses {sorted(unknown)}: add them to SHORT_DURATIONS"
