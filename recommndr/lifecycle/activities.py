"""The loop's activities: every I/O of the orchestrations (:mod:`recommndr.lifecycle.workflow`),
each a function of one small JSON document returning another. Durable Functions (``orchestrations/``),
the local durable backend (:mod:`recommndr.lifecycle.local`) and the CLI (``recommndr canary``,
``promote``, ``rollback``) call exactly these.

The document is the orchestration's input (:class:`LoopInput`, as a dict) plus what earlier
activities returned. Secrets never travel in it: the API's admin token is minted here from
``RECOMMNDR_ADMIN_JWT_SECRET`` (or taken from ``RECOMMNDR_ADMIN_TOKEN``).

Alias moves go through :func:`move_alias` only: MLflow's alias set, a tag on the version and an
entry in the append-only audit trail (MLflow keeps no history of aliases) — so "who moved
champion, when and why" has an answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from recommndr.errors import RecommndrError, ServiceUnavailableError, UserInputError
from recommndr.lifecycle import canary
from recommndr.lifecycle.gate import GATE_METRIC, gate_metric
from recommndr.monitoring.sequential import spent_alpha

DRIFT_KINDS = (
    "feature",
    "score",
    "confidence",
    "validation",
)  # monitoring.drift.KINDS (a test keeps them equal)

log = logging.getLogger(__name__)
Fault = Literal["none", "random", "errors", "slow", "drift"]
ALIASES = ("champion", "challenger", "previous_champion")
HTTP_TIMEOUT_S = 10.0
GET_ATTEMPTS = 3
TRANSITIONS = ("traffic", "pause", "resume")  # recorded as MLflow runs, not as version tags


class LoopInput(BaseModel):
    """What one run of the loop needs (no secrets): it is the orchestration's input."""

    model_config = ConfigDict(extra="allow")  # activities add what earlier ones returned
    data: str = Field(description="the dataset to validate and train on")
    out_root: str = Field(description="where the challenger's bundle is written (a folder per run)")
    api: str = Field(description="the API whose traffic and models the canary moves")
    tracking_uri: str = Field(description="MLflow tracking and registry")
    audit_path: str = Field(description="the audit trail (append-only JSON lines)")
    rules: canary.CanaryRules = Field(default_factory=canary.CanaryRules)
    params: str | None = Field(None, description="a parameters file (train section)")
    bundle: str | None = Field(
        None, description="a bundle trained already: registered as the challenger, not retrained"
    )
    eval_users: int = Field(20_000, ge=100)
    gate_tolerance: float = Field(
        0.02, ge=0, lt=1, description="the challenger may be this much worse offline"
    )
    fault: Fault = "none"
    trigger: str = "manual"
    by: str = "workflow"
    load_timeout_s: float = Field(120.0, gt=0, description="how long the API may take to load a model")
    instance_id: str = ""


# --- helpers ----------------------------------------------------------------------------------
def _token() -> str:
    from recommndr.config import get_settings
    from recommndr.monitoring.watch import admin_token

    return admin_token(get_settings(), lifetime_s=600)


def _call(cfg: dict[str, Any], method: str, path: str, admin: bool = True, **kw: Any) -> httpx.Response:
    """One request to the API; a clear error when it cannot be reached or refuses."""
    url = cfg["api"].rstrip("/") + path
    headers = {"Authorization": f"Bearer {_token()}"} if admin else {}
    # a read is retried (a worker restarting, a moment's overload): one blip must not end a canary
    attempts = GET_ATTEMPTS if method == "GET" else 1
    for attempt in range(attempts):
        try:
            r = httpx.request(method, url, headers=headers, timeout=HTTP_TIMEOUT_S, **kw)
        except httpx.HTTPError as exc:
            if attempt + 1 < attempts:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise RecommndrError(
                f"the API at {cfg['api']} could not be reached ({method} {path}): {exc}"
            ) from exc
        if r.status_code < 500 or attempt + 1 == attempts:
            break
        time.sleep(0.5 * (attempt + 1))
    if r.status_code >= 400:
        try:
            message = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = r.text[:300]
        raise RecommndrError(f"{method} {path}: the API answered {r.status_code}: {message}")
    return r


def _models(cfg: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = _call(cfg, "GET", "/models", admin=False).json()
    return body


def _served(models: dict[str, Any]) -> dict[str, str]:
    return {m["variant"]: m["version"] for m in models.get("models", [])}


def _client(cfg: dict[str, Any]) -> Any:
    import os

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg["tracking_uri"])


def _audit(cfg: dict[str, Any]) -> Any:
    from recommndr.lifecycle.audit import AuditTrail

    return AuditTrail(Path(cfg["audit_path"]))


def _by(cfg: dict[str, Any]) -> str:
    iid = cfg.get("instance_id")
    return f"{cfg.get('by', 'workflow')}:{iid}" if iid else str(cfg.get("by", "workflow"))


class RegistryUnavailableError(ServiceUnavailableError):
    """The MLflow registry could not be read or written (a bad URI, a corrupt or locked database,
    an unreachable server): said as such, never as "no challenger"."""

    code = "registry_unavailable"


@contextmanager
def _registry(cfg: dict[str, Any], doing: str) -> Iterator[None]:
    """Turn any failure of MLflow (or of the database under it) into :class:`RegistryUnavailableError`
    naming the registry and what was being done; the project's own errors pass through."""
    try:
        yield
    except RecommndrError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RegistryUnavailableError(
            f"the model registry at {_redacted(str(cfg.get('tracking_uri')))} failed while {doing}: "
            f"{type(exc).__name__}: {_redacted(first)}"
        ) from exc


def _redacted(text: str) -> str:
    """``text`` with the password of any ``scheme://user:password@host`` in it replaced by ``***``
    (a registry URI or a database error can carry one; messages reach logs and the ops page)."""
    import re

    return re.sub(r"(\w+://[^/\s:@]*:)[^@\s/]*@", r"\1***@", text)


def alias_versions(cfg: dict[str, Any], alias: str) -> dict[str, str] | None:
    """Each registered model's version behind ``alias`` (None when the ranker has none)."""
    from recommndr.registry.tracking import RANKER_MODEL, RETRIEVAL_MODEL, alias_version

    out = {}
    with _registry(cfg, f"reading the alias {alias}"):
        client = _client(cfg)
        for name in (RETRIEVAL_MODEL, RANKER_MODEL):
            v = alias_version(client, name, alias)
            if v is not None:
                out[name] = str(v.version)
    return out if RANKER_MODEL in out else None


def move_alias(cfg: dict[str, Any], alias: str, versions: dict[str, str] | None, reason: str) -> None:
    """Point ``alias`` at ``versions`` (None: delete it), tag the versions, and append the move to
    the audit trail with what the alias pointed to before."""
    with _registry(cfg, f"moving the alias {alias}"):
        _move_alias(cfg, alias, versions, reason)


def _move_alias(cfg: dict[str, Any], alias: str, versions: dict[str, str] | None, reason: str) -> None:
    from recommndr.registry.tracking import alias_version

    client = _client(cfg)
    trail = _audit(cfg)
    names = versions or {n: "" for n in ("recommndr-retrieval", "recommndr-ranker")}
    for name in names:
        before = alias_version(client, name, alias)
        previous = None if before is None else str(before.version)
        target = (versions or {}).get(name)
        if target == previous:
            continue
        if target is None:
            if previous is None:
                continue
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, target)
            client.set_model_version_tag(name, target, f"recommndr.{alias}_since", str(int(time.time())))
        trail.append("alias", _by(cfg), reason, {"model": name, "alias": alias, "version": target,
                                                 "previous": previous})  # fmt: skip


# --- the activities ---------------------------------------------------------------------------
def validate_data(cfg: dict[str, Any]) -> dict[str, Any]:
    """Great Expectations on the dataset: ``{"valid", "reason", "evaluated", "failures"}``."""
    from recommndr.data.validate import validate_dataset

    data = Path(cfg["data"])
    if not data.is_dir():
        return {"valid": False, "reason": f"no dataset at {data}", "evaluated": 0, "failures": []}
    report = validate_dataset(data)
    failed = [f"{f.table}.{f.expectation}" for f in report.failures][:10]
    reason = (f"{report.evaluated} expectations met" if report.success
              else f"{len(report.failures)} of {report.evaluated} expectations failed: {', '.join(failed)}")  # fmt: skip
    return {"valid": report.success, "reason": reason, "evaluated": report.evaluated, "failures": failed}


def train_challenger(cfg: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate (an MLflow run), register the bundle as ``challenger``; no promotion.
    With ``bundle``, that bundle (and the ``metrics.json`` beside it) is registered instead."""
    import json

    from recommndr.lifecycle.train import METRICS_FILE, register, train_and_register
    from recommndr.params import TrainConfig, load_train_config
    from recommndr.registry.artifacts import model_version, read_manifest

    if cfg.get("bundle"):
        out = Path(cfg["bundle"])
        manifest = read_manifest(out)
        metrics_file = out / METRICS_FILE
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        reg = register(
            out,
            TrainConfig.model_validate(manifest["config"]),
            {},
            metrics,
            cfg["tracking_uri"],
            promote=False,
        )
    else:
        out = Path(cfg["out_root"]) / f"challenger-{cfg.get('instance_id') or int(time.time())}"
        train_cfg = load_train_config(Path(cfg["params"]) if cfg.get("params") else None)
        outcome = train_and_register(Path(cfg["data"]), out, train_cfg, track=True, eval_users=cfg.get("eval_users", 20_000),
                                     promote=False, uri=cfg["tracking_uri"])  # fmt: skip
        assert outcome.registration is not None  # track=True
        reg, metrics = outcome.registration, outcome.metrics
    metric = gate_metric(metrics)
    _audit(cfg).append("retrain", _by(cfg), f"registered run {reg.run_id} as challenger",
                       {"versions": reg.versions, "trigger": cfg.get("trigger"), "bundle": str(out)})  # fmt: skip
    return {"run_id": reg.run_id, "versions": reg.versions, "metric": metric, "artifacts": str(out),
            "model_version": model_version(read_manifest(out))}  # fmt: skip


def gate(cfg: dict[str, Any]) -> dict[str, Any]:
    """The offline gate: the challenger's held-out figure against the champion's, within
    ``gate_tolerance`` (the canary judges the rest live)."""
    from recommndr.lifecycle.gate import canary_gate
    from recommndr.registry.tracking import champion_metric

    has_champion, champion = champion_metric(cfg["tracking_uri"], GATE_METRIC)
    d = canary_gate(cfg["challenger"].get("metric"), has_champion, champion, cfg.get("gate_tolerance", 0.02))
    return {"passed": d.promote, "has_champion": has_champion, "reason": d.reason,
            "champion_metric": champion, "challenger_metric": cfg["challenger"].get("metric")}  # fmt: skip


def reject(cfg: dict[str, Any]) -> dict[str, Any]:
    """The challenger failed the gate: its alias removed, the decision recorded."""
    versions = cfg["challenger"]["versions"]
    if alias_versions(cfg, "challenger") == versions:
        move_alias(cfg, "challenger", None, f"rejected: {cfg['reason']}")
    record({**cfg, "action": "rejected", "rule": "offline_gate"})
    return {"rejected": True}


def start_canary(cfg: dict[str, Any]) -> dict[str, Any]:
    """Wait until the API serves the new challenger beside the champion, inject the fault asked
    for (tests, demos), and take the counters' baseline."""
    want = cfg["challenger"]["model_version"]
    deadline = time.monotonic() + float(cfg.get("load_timeout_s", 120.0))
    served = _served(_models(cfg))
    if served.get("champion") == want:
        raise RecommndrError(
            f"the challenger {want} is the champion's own bundle (the same files): there is nothing to canary"
        )
    if _control(cfg).get("paused"):  # a pause left on would hold this canary's first step for ever
        raise RecommndrError(
            "the API's canary control is paused (GET /models/control): resume it "
            '(POST /models/pause {"paused": false}) before starting a canary'
        )
    while served.get("challenger") != want:
        if time.monotonic() > deadline:
            raise RecommndrError(
                f"the API at {cfg['api']} did not load challenger {want} within {cfg.get('load_timeout_s')} s "
                f"(it serves {served}); does it follow the registry at {cfg['tracking_uri']}?"
            )
        time.sleep(0.5)
        served = _served(_models(cfg))
    if cfg.get("fault", "none") != "none":
        _call(cfg, "POST", "/models/fault", json={"kind": cfg["fault"]})
        _audit(cfg).append("fault", _by(cfg), f"injected fault {cfg['fault']} into the challenger", {})
    baseline = snapshot(cfg)
    record(
        {
            **cfg,
            "action": "canary_start",
            "rule": "",
            "reason": f"challenger {want} beside champion {served['champion']}",
        }
    )
    return {"baseline": baseline, "champion": {"model_version": served["champion"]},
            "started_at": baseline["at"]}  # fmt: skip


def snapshot(cfg: dict[str, Any]) -> dict[str, Any]:
    """The API's counters now (``/metrics``, summed over its workers)."""
    return canary.parse_metrics(_call(cfg, "GET", "/metrics", admin=False).text, time.time())


def set_traffic(cfg: dict[str, Any]) -> dict[str, Any]:
    """The challenger's share of users (the champion serves the rest), audited."""
    share = float(cfg["share"])
    try:
        body = _call(cfg, "POST", "/models/traffic", json={"challenger": share}).json()
    except RecommndrError as exc:
        if share > 0 and "409" in str(exc) and str(cfg.get("reason", "")).startswith("rollback"):
            # stepping down, the challenger is gone already: every shopper is on the champion
            return {"traffic": {"champion": 1.0}, "no_challenger": True}
        raise
    # the API audits the move itself (under the token's subject); this says why
    _audit(cfg).append("canary_step", _by(cfg), str(cfg.get("reason", "")), {"challenger": share})
    record({**cfg, "action": "traffic", "rule": "", "look": None,
            "reason": f"challenger share {share:g}: {cfg.get('reason', '')}"})  # fmt: skip
    return {"traffic": body["traffic"]}


def analyse(cfg: dict[str, Any]) -> dict[str, Any]:
    """One look: the counters, the operator's control, the alerts, the drift check of the
    variant's window; the decision of :func:`recommndr.lifecycle.canary.analyse`."""
    rules = canary.CanaryRules.model_validate(cfg["rules"])
    variant = cfg.get("variant", "challenger")
    history = [*cfg["history"], snapshot(cfg)]
    history = canary.trim(history, rules)
    control = _control(cfg)
    alerts = _alerts(cfg) if rules.alerts else []
    state = cfg.get("state", {})
    # the k-th drift check of this canary tests each of its kinds at its share of drift_alpha, so
    # that a healthy challenger is flagged at most that often over all its looks and kinds together
    drift_look = int(state.get("drift_checks", 0)) + 1
    drift_level = spent_alpha(rules.drift_alpha, drift_look) / len(DRIFT_KINDS)  # each kind its share
    drift = _drift(cfg, variant, drift_level) if rules.drift else None
    out = canary.analyse(history, cfg["baseline"], rules, state, bool(cfg.get("last_step")),
                         drift=drift, alerts=alerts, control=control, variant=variant,
                         business=cfg.get("business", True), share=float(cfg.get("share") or 0.0), may_promote=bool(cfg.get("may_promote")))  # fmt: skip
    if drift is not None:
        out["state"]["drift_checks"] = drift_look
    paused = bool(control.get("paused"))
    if paused != bool(state.get("paused", False)):  # a transition: a run of its own, once
        record({**cfg, "action": "pause" if paused else "resume", "rule": "operator", "look": None,
                "reason": "the operator's control " + ("paused the canary: it holds its step" if paused
                                                       else "resumed the canary")})  # fmt: skip
        out["state"]["paused"] = paused
    out["look"]["share"] = cfg.get("share")
    return {"history": history, **out}


def _control(cfg: dict[str, Any]) -> dict[str, Any]:
    try:
        body: dict[str, Any] = _call(cfg, "GET", "/models/control").json()
        return body
    except RecommndrError as exc:  # an API without the endpoint: no operator input
        log.warning("no operator control: %s", exc)
        return {}


def _alerts(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Alerts received since the canary began (the API's inbox, newest 100)."""
    try:
        body = _call(cfg, "GET", "/alerts", params={"limit": 100}).json()
    except RecommndrError as exc:
        log.warning("alerts not read: %s", exc)
        return []
    since = float(cfg.get("baseline", {}).get("at", 0.0))
    rows = body.get("alerts", [])
    return [a for a in rows if float(a.get("received_at") or 0.0) >= since]


def _reference(cfg: dict[str, Any], variant: str) -> Path | None:
    """The monitoring reference of what ``variant`` serves: the challenger's bundle folder, or
    the registry's champion run's (fetched once per run into ``out_root``)."""
    from recommndr.monitoring.reference import FILE as REFERENCE_FILE
    from recommndr.registry.tracking import RANKER_MODEL, alias_version

    if variant == "challenger":
        path = Path(cfg["challenger"]["artifacts"]) / REFERENCE_FILE
        return path if path.exists() else None
    version = alias_version(_client(cfg), RANKER_MODEL, "champion")
    if version is None:
        return None
    dest = Path(cfg["out_root"]) / "references" / f"{version.run_id}.npz"
    if not dest.exists():
        from mlflow.artifacts import download_artifacts

        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            got = download_artifacts(run_id=version.run_id, artifact_path=f"bundle/{REFERENCE_FILE}",
                                     dst_path=str(dest.parent / f".{version.run_id}"), tracking_uri=cfg["tracking_uri"])  # fmt: skip
        except Exception as exc:  # an older bundle without one, an unreachable store
            log.warning("no monitoring reference for the champion's run %s: %s", version.run_id, exc)
            return None
        Path(got).replace(dest)
    return dest


def _drift(cfg: dict[str, Any], variant: str, alpha: float) -> dict[str, Any] | None:
    """Drift of the challenger's own making: the drift check of what it served since the canary
    began (against its reference) and of what the champion served beside it on the same traffic
    (against the champion's); a kind counts only where the challenger flags it and the champion
    does not — shoppers who changed, or a clock that moved on, shift both arms alike, and that is
    the monitoring's alert, not the canary's. The feature kind counts the quantities that can move by
    the model's doing only (:func:`recommndr.lifecycle.canary.of_the_model`); the shopper's own ones
    flagged are reported beside it (the guard's ``shopper_features``). None when it cannot be checked yet."""
    from recommndr.monitoring.drift import check
    from recommndr.monitoring.reference import Reference
    from recommndr.monitoring.watch import fetch_window
    from recommndr.monitoring.window import MAX_WINDOW_S

    if variant != "challenger":
        return None
    seconds = min(MAX_WINDOW_S, max(1.0, time.time() - float(cfg["baseline"]["at"])))
    flagged: dict[str, dict[str, bool]] = {}
    names: dict[str, list[str]] = {}
    for arm in ("challenger", "champion"):
        ref = _reference(cfg, arm)
        if ref is None:
            return None
        try:
            window, _ = fetch_window(cfg["api"], arm, seconds, _token())
        except (UserInputError, RecommndrError) as exc:
            log.warning("drift not checked: %s", exc)
            return None
        if window.lists_seen < 30:  # too few lists to say anything yet
            return None
        report = check(Reference.load(ref), window, alpha)
        names[arm] = sorted(n for n, f in report["features"].items() if f["drift"])
        flagged[arm] = {k: bool(v) for k, v in report["kinds"].items()}
        flagged[arm]["feature"] = any(canary.of_the_model(n) for n in names[arm])
    kinds = {k: v and not flagged["champion"].get(k, False) for k, v in flagged["challenger"].items()}
    model = [n for n in names["challenger"] if canary.of_the_model(n)]
    return {
        "kinds": kinds,
        "features": model if kinds.get("feature") else [],
        "shopper_features": [n for n in names["challenger"] if n not in model],
        "challenger": flagged["challenger"],
        "champion": flagged["champion"],
        "alpha": alpha,
    }


def promote(cfg: dict[str, Any]) -> dict[str, Any]:
    """The challenger becomes champion; the champion before keeps ``previous_champion``."""
    versions = cfg["challenger"]["versions"]
    before = alias_versions(cfg, "champion")
    reason = f"promoted ({cfg.get('rule', '')}): {cfg.get('reason', '')}"
    if before is not None and before != versions:
        move_alias(cfg, "previous_champion", before, reason)
    move_alias(cfg, "champion", versions, reason)
    if alias_versions(cfg, "challenger") == versions:
        move_alias(cfg, "challenger", None, reason)
    if cfg.get("api"):
        _clear_fault(cfg)
        if cfg["challenger"].get("model_version"):
            _wait_served(cfg, "champion", cfg["challenger"]["model_version"])
        _call(cfg, "POST", "/models/traffic", json={"challenger": 0.0})  # a later challenger starts at 0
    _audit(cfg).append("promote", _by(cfg), reason, {"versions": versions})
    record({**cfg, "action": "promote"})
    return {"promoted": versions}


def rollback_models(cfg: dict[str, Any]) -> dict[str, Any]:
    """The challenger's alias removed (the API drops it); with ``restore_champion``, the
    champion moved back to ``previous_champion``."""
    reason = f"rolled back ({cfg.get('rule', '')}): {cfg.get('reason', '')}"
    restored = None
    if cfg.get("restore_champion"):
        restored = alias_versions(cfg, "previous_champion")
        if restored is None:
            raise RecommndrError("cannot restore the champion: the registry has no previous_champion")
        move_alias(cfg, "champion", restored, reason)
    challenger = (cfg.get("challenger") or {}).get("versions")
    if challenger is None or alias_versions(cfg, "challenger") == challenger:
        move_alias(cfg, "challenger", None, reason)
    if cfg.get("api"):
        _clear_fault(cfg)
    _audit(cfg).append("rollback", _by(cfg), reason, {"restored": restored})
    return {"restored": restored}


def _clear_fault(cfg: dict[str, Any]) -> None:
    if cfg.get("fault", "none") != "none":
        _call(cfg, "POST", "/models/fault", json={"kind": "none"})


def _wait_served(cfg: dict[str, Any], variant: str, version: str) -> None:
    deadline = time.monotonic() + float(cfg.get("load_timeout_s", 120.0))
    while _served(_models(cfg)).get(variant) != version:
        if time.monotonic() > deadline:
            raise RecommndrError(
                f"the API did not load {variant} {version} within {cfg.get('load_timeout_s')} s"
            )
        time.sleep(0.5)


def health_check(cfg: dict[str, Any]) -> dict[str, Any]:
    """After a rollback: the API ready, the champion expected, nobody on the challenger."""
    try:
        _call(cfg, "GET", "/ready", admin=False)
        models = _models(cfg)
    except RecommndrError as exc:
        return {"healthy": False, "reason": str(exc)}
    served = _served(models)
    want = (cfg.get("champion") or {}).get("model_version")
    if cfg.get("restore_champion"):
        want = None  # the previous champion's bundle: its version is whatever the registry held
    share = float(models.get("traffic", {}).get("challenger", 0.0))
    if share > 0:
        return {"healthy": False, "reason": f"the challenger still gets {share:.0%} of users"}
    if want is not None and served.get("champion") != want:
        return {"healthy": False, "reason": f"the API serves champion {served.get('champion')}, not {want}"}
    return {"healthy": True, "reason": f"ready; champion {served.get('champion')} serves every user"}


def record(cfg: dict[str, Any]) -> dict[str, Any]:
    """A decision or a transition (a traffic step, a pause, a resume) as an MLflow run (its numbers
    as metrics, its reason and rule as tags); a decision also as a tag on the challenger's model
    versions."""
    from recommndr.registry.tracking import log_experiment

    action = str(cfg.get("action", "decision"))
    look = cfg.get("look") or {}
    numbers: dict[str, Any] = {}
    for name in ("ctr", "cvr"):
        if isinstance(look.get(name), dict):
            numbers[name] = {
                k: v for k, v in look[name].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
    version = (cfg.get("challenger") or {}).get("model_version", "")
    try:
        run_id, _ = log_experiment(
            f"{action} {version}".strip(), "canary",
            {"action": action, "rule": cfg.get("rule", ""), "reason": str(cfg.get("reason", ""))[:500],
             "instance_id": cfg.get("instance_id", ""), "trigger": cfg.get("trigger", ""), "fault": cfg.get("fault", "none")},
            numbers, {}, {}, uri=cfg["tracking_uri"],
        )  # fmt: skip
        client = _client(cfg)
        tagged = {} if action in TRANSITIONS else (cfg.get("challenger") or {}).get("versions") or {}
        for name, v in tagged.items():
            client.set_model_version_tag(
                name, v, "recommndr.canary", f"{action}: {str(cfg.get('reason', ''))[:200]}"
            )
    except Exception as exc:  # the record must never turn a rollback into a failure
        log.error("decision %s not logged to MLflow: %s", action, exc)
        return {"run_id": None}
    return {"run_id": run_id}


def publish_progress(cfg: dict[str, Any]) -> dict[str, Any]:
    """The progress document to the API (the ops page draws it), with its looks: the API's copy
    keeps them (the newest ``max_looks``), so the orchestration's history does not carry them at
    every call; a failure is logged only."""
    try:
        doc = dict(cfg["progress"])
        current = (_call(cfg, "GET", "/models/canary").json() or {}).get("canary") or {}
        looks = current.get("looks", []) if current.get("instance_id") == doc.get("instance_id") else []
        if cfg.get("look") is not None:
            looks = [*looks, cfg["look"]]
        doc["looks"] = looks[-int(cfg.get("max_looks", 25)) :]
        _call(cfg, "PUT", "/models/canary", json=doc)
    except RecommndrError as exc:
        log.warning("canary progress not published: %s", exc)
        return {"published": False}
    return {"published": True}


ACTIVITIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    f.__name__: f
    for f in (
        validate_data,
        train_challenger,
        gate,
        reject,
        start_canary,
        set_traffic,
        analyse,
        promote,
        rollback_models,
        health_check,
        record,
        publish_progress,
    )
}
