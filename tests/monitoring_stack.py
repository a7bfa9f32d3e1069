"""Debian's Prometheus and Alertmanager started for a test: fresh data folders, free ports, the
project's own configuration (infra/monitoring) with its targets and timings made test-sized.

What changes for a test, and only this: scrape and evaluation every second; every window,
offset and ``for:`` of the rules rewritten through :data:`SHORT_DURATIONS` (the rules use only
those durations; tests/integration/test_monitoring_rules.py keeps it so), so the record names keep
their long-window suffix while covering seconds; the scrape targets (a job without a target is
left out, so no "target down" alert is raised for a service the test does not run); Alertmanager's
webhook URL, its token file and its group timings (``group_wait`` 0 s, ``group_interval`` 1 s).

Used by the live alert test and meant for any test that needs a real Prometheus holding the API's
series (dashboard queries, say): :func:`monitoring_stack` yields a :class:`Stack` with ``query``.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.servers import log_tail, running, wait_ok
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "infra" / "monitoring"
# every duration the rules use, and what it becomes in a test with 1-second scrapes (a range
# holds at least 4 scrapes, so rate() always has two samples)
SHORT_DURATIONS = {"1m": "4s", "2m": "4s", "5m": "5s", "10m": "6s", "15m": "8s", "30m": "10s",
                   "1h": "20s", "1d": "60s"}  # fmt: skip
_DURATION = re.compile(r"(\[|offset\s+|for:\s*)(\d+[smhdwy])(\])?")


def durations_in(text: str) -> set[str]:
    """Every range, offset and ``for:`` duration written in a rules file."""
    return {m.group(2) for m in _DURATION.finditer(text)}


def shorten(text: str) -> str:
    """The rules with every duration replaced by its test-sized one (KeyError on one not listed)."""
    return _DURATION.sub(lambda m: f"{m.group(1)}{SHORT_DURATIONS[m.group(2)]}{m.group(3) or ''}", text)


def _exe(*names: str) -> str:
    for name in names:
        if found := shutil.which(name):
            return found
    pytest.fail(
        f"{names[0]} is missing: `make setup` installs Debian's prometheus and prometheus-alertmanager"
    )


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as res:
        return json.loads(res.read())


def poll(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """``check()``'s first truthy result; fails naming ``what`` (and the last error) at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
            last = result
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        time.sleep(every)
    pytest.fail(f"{what}: not after {timeout:.0f} s (last: {last!r})")


@dataclass
class Stack:
    prometheus: str
    alertmanager: str
    work: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result (vector samples), failing on a Prometheus error."""
        url = f"{self.prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            body = get_json(url)
        except urllib.error.HTTPError as exc:
            pytest.fail(f"Prometheus refused {expr!r}: {exc.read().decode(errors='replace')}")
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def active_alerts(self) -> list[dict[str, Any]]:
        """Prometheus' pending and firing alerts."""
        return list(get_json(f"{self.prometheus}/api/v1/alerts")["data"]["alerts"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(get_json(f"{self.prometheus}/api/v1/rules")["data"]["groups"])


def _prometheus_config(work: Path, targets: dict[str, list[str]], alertmanager: str) -> Path:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    rules = []
    for name in config["rule_files"]:
        short = work / Path(name).name
        short.write_text(shorten((MONITORING / name).read_text()))
        rules.append(str(short))
    config["rule_files"] = rules
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    jobs = []
    for job in config["scrape_configs"]:
        if targets.get(job["job_name"]):
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
            jobs.append(job)
    config["scrape_configs"] = jobs
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _alertmanager_config(work: Path, webhook_url: str, token: str) -> Path:
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    secret = work / "alert-webhook-token"
    secret.write_text(token)
    secret.chmod(0o600)
    for route in [config["route"], *config["route"].get("routes", [])]:
        route.update(group_wait="0s", group_interval="1s", repeat_interval="1m")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
            hook["http_config"]["authorization"]["credentials_file"] = str(secret)
    path = work / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextmanager
def monitoring_stack(
    work: Path, targets: dict[str, list[str]], webhook_url: str, webhook_token: str
) -> Iterator[Stack]:
    """Alertmanager (posting to ``webhook_url`` with ``webhook_token``) and Prometheus (scraping
    ``targets``: job name -> host:port list, the jobs of infra/monitoring/prometheus.yml) until the
    block ends; both stopped, with their logs in ``work`` for a failure's message."""
    work.mkdir(parents=True, exist_ok=True)
    am_port, prom_port = free_port(), free_port()
    am_log, prom_log = work / "alertmanager.log", work / "prometheus.log"
    am_cmd = [_exe("prometheus-alertmanager", "alertmanager"),
              f"--config.file={_alertmanager_config(work, webhook_url, webhook_token)}",
              f"--storage.path={work / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
              "--cluster.listen-address=", "--log.level=warn"]  # fmt: skip
    prom_cmd = [_exe("prometheus"),
                f"--config.file={_prometheus_config(work, targets, f'127.0.0.1:{am_port}')}",
                f"--storage.tsdb.path={work / 'prometheus-data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn"]  # fmt: skip
    with ExitStack() as stack:
        am = stack.enter_context(running(am_cmd, env={}, cwd=work, log=am_log))
        prom = stack.enter_context(running(prom_cmd, env={}, cwd=work, log=prom_log))
        wait_ok(f"http://127.0.0.1:{am_port}/-/ready", am, am_log, timeout=60)
        wait_ok(f"http://127.0.0.1:{prom_port}/-/ready", prom, prom_log, timeout=60)
        yield Stack(f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{am_port}", work)


def logs(work: Path) -> str:
    """The tails of the stack's logs, for a failure's message."""
    return "\n".join(
        f"--- {name}:\n{log_tail(work / name, 20)}" for name in ("prometheus.log", "alertmanager.log")
    )
