"""The loop's orchestrations: retrain → validate → gate → register → canary → promote or roll back,
and the rollback itself.

These are Durable Functions orchestrators in the azure-functions-durable v1 style (generators that
yield tasks) and they are deterministic: they only call activities, create timers, read
``ctx.current_utc_datetime`` and ``ctx.instance_id``, and set the custom status. Every I/O is an
activity of :mod:`recommndr.lifecycle.activities`, called by name with a small JSON input. The
same functions run on Azure (``orchestrations/`` registers them) and locally on the Durable Task
SDK's in-memory backend (:mod:`recommndr.lifecycle.local` adapts its context to these names).

The input (``LoopInput`` in activities.py) carries everything an activity needs that is not a
secret: the data, the API's URL, the registry, the audit trail, the canary's rules (hold times in
seconds, so tests run in seconds).
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from typing import Any, Protocol

RETRAIN = "retrain"
ROLLBACK = "rollback"
MAX_LOOKS_KEPT = 25  # in the progress document the ops page draws (the API takes 64 KiB at most)


class Context(Protocol):
    """What an orchestrator may use (azure.durable_functions.DurableOrchestrationContext's names)."""

    @property
    def instance_id(self) -> str: ...

    @property
    def current_utc_datetime(self) -> datetime: ...

    def get_input(self) -> Any: ...

    def call_activity(self, name: str, input_: Any = None) -> Any: ...

    def call_sub_orchestrator(self, name: str, input_: Any = None, instance_id: str | None = None) -> Any: ...

    def create_timer(self, fire_at: datetime) -> Any: ...

    def set_custom_status(self, status: Any) -> None: ...


Orchestration = Generator[Any, Any, dict[str, Any]]


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _seconds(ctx: Context, since: datetime) -> float:
    return round((ctx.current_utc_datetime - since).total_seconds(), 3)


def retrain(ctx: Context) -> Orchestration:
    """The whole loop for one challenger; returns ``{"outcome", "reason", "steps", "seconds", ...}``."""
    cfg: dict[str, Any] = dict(ctx.get_input() or {})
    cfg["instance_id"] = ctx.instance_id
    rules: dict[str, Any] = cfg["rules"]
    t0 = ctx.current_utc_datetime
    steps_done: list[dict[str, Any]] = []
    progress: dict[str, Any] = {
        "instance_id": ctx.instance_id, "status": "validating", "started_at": _iso(t0),
        "steps": list(rules["steps"]), "step": None, "share": 0.0, "decision": None,
        "trigger": cfg.get("trigger", "manual"),
    }  # fmt: skip

    def publish(look: dict[str, Any] | None = None, **changes: Any) -> Any:
        progress.update(changes, updated_at=_iso(ctx.current_utc_datetime))
        ctx.set_custom_status({k: progress[k] for k in ("status", "step", "share")})
        return ctx.call_activity("publish_progress", {**cfg, "progress": progress, "look": look,
                                                      "max_looks": MAX_LOOKS_KEPT})  # fmt: skip

    def finish(outcome: str, reason: str, **extra: Any) -> dict[str, Any]:
        return {"outcome": outcome, "reason": reason, "steps": steps_done, "seconds": _seconds(ctx, t0),
                "instance_id": ctx.instance_id, **extra}  # fmt: skip

    yield publish()
    valid = yield ctx.call_activity("validate_data", cfg)
    steps_done.append({"step": "validate", **valid})
    if not valid["valid"]:
        yield publish(
            status="rejected", decision={"action": "reject", "rule": "validation", "reason": valid["reason"]}
        )
        yield ctx.call_activity(
            "record", {**cfg, "action": "rejected", "reason": valid["reason"], "rule": "validation"}
        )
        return finish("rejected", valid["reason"])

    yield publish(status="training")
    trained = yield ctx.call_activity("train_challenger", cfg)
    steps_done.append({"step": "train", **{k: trained[k] for k in ("run_id", "model_version", "metric")}})
    cfg["challenger"] = trained

    yield publish(status="gating", challenger_version=trained["model_version"])
    gate = yield ctx.call_activity("gate", cfg)
    steps_done.append({"step": "gate", **gate})
    if not gate["passed"]:
        yield ctx.call_activity("reject", {**cfg, "reason": gate["reason"]})
        yield publish(
            status="rejected", decision={"action": "reject", "rule": "offline_gate", "reason": gate["reason"]}
        )
        return finish("rejected", gate["reason"])
    if not gate["has_champion"]:  # nothing to compare with live: the first model is the champion
        yield ctx.call_activity("promote", {**cfg, "reason": gate["reason"], "rule": "no_champion"})
        yield publish(
            status="promoted", decision={"action": "promote", "rule": "no_champion", "reason": gate["reason"]}
        )
        return finish("promoted", gate["reason"])

    started = yield ctx.call_activity("start_canary", cfg)
    cfg["baseline"] = started["baseline"]
    cfg["champion"] = started["champion"]
    progress["champion_version"] = started["champion"]["model_version"]
    share = 0.0
    history: list[dict[str, Any]] = [started["baseline"]]
    try:
        decision, history, share = yield from _canary(ctx, cfg, progress, publish, steps_done)
    except Exception as exc:  # an activity failed mid-canary: the challenger must not keep its traffic
        share = progress["share"]
        decision = {"action": "rollback", "rule": "workflow_error", "acute": True,
                    "reason": f"an activity failed during the canary: {exc}"}  # fmt: skip
    steps_done.append({"step": "decision", "at": _iso(ctx.current_utc_datetime), **decision})
    if decision["action"] == "promote":
        yield publish(status="promoting")
        yield ctx.call_activity(
            "promote",
            {**cfg, "reason": decision["reason"], "rule": decision["rule"], "look": decision.get("look")},
        )
        if rules.get("watch_seconds", 0) > 0:  # the guards keep watching the new champion
            watched = yield ctx.call_sub_orchestrator(
                "watch_champion", {**cfg, "history": history}, f"{ctx.instance_id}-watch"
            )
            if watched["action"] == "rollback":
                yield publish(status="rolling_back", decision=watched)
                yield ctx.call_sub_orchestrator(ROLLBACK, _rollback_input(cfg, watched, share=1.0, restore=True),
                                                f"{ctx.instance_id}-rollback")  # fmt: skip
                yield publish(status="rolled_back")
                return finish("rolled_back", watched["reason"], rule=watched["rule"], after_promotion=True)
        yield publish(status="promoted")
        return finish("promoted", decision["reason"], rule=decision["rule"])
    yield publish(status="rolling_back")
    rb = yield ctx.call_sub_orchestrator(
        ROLLBACK,
        _rollback_input(cfg, decision, share=share, restore=False),
        f"{ctx.instance_id}-rollback",
    )
    yield publish(status="rolled_back")
    return finish("rolled_back", decision["reason"], rule=decision["rule"], rollback=rb)


def _canary(
    ctx: Context,
    cfg: dict[str, Any],
    progress: dict[str, Any],
    publish: Any,
    steps_done: list[dict[str, Any]],
) -> Generator[Any, Any, tuple[dict[str, Any], list[dict[str, Any]], float]]:
    """The steps, each held ``step_seconds`` with a look every ``look_seconds``; returns the
    decision that ended it, the counters' history and the share reached.

    The arms are compared while both serve: the last step below 100 % decides (held on, up to
    ``max_extension`` steps more, while the test is inconclusive); a step at 100 % after it only
    guards the challenger under the whole load, and promotes at its end."""
    rules = cfg["rules"]
    history: list[dict[str, Any]] = [cfg["baseline"]]
    state: dict[str, Any] = {}
    steps = rules["steps"]
    n_steps = len(steps)
    deciding = max((k for k, s in enumerate(steps) if s < 1.0), default=n_steps - 1)
    decision: dict[str, Any] = {"action": "continue"}
    shown: dict[str, Any] | None = None  # the comparison's verdict, once the challenger is shown no worse
    share = 0.0
    for i, share in enumerate(steps):
        moved = yield ctx.call_activity(
            "set_traffic", {**cfg, "share": share, "reason": f"canary step {i + 1} of {n_steps}"}
        )
        steps_done.append({"step": "canary", "index": i, "share": share, "traffic": moved["traffic"],
                           "at": _iso(ctx.current_utc_datetime)})  # fmt: skip
        yield publish(status="canary", step=i, share=share)
        held = ctx.current_utc_datetime + timedelta(seconds=rules["step_seconds"])
        extra = rules.get("max_extension", 0.0) * rules["step_seconds"] if i == deciding else 0.0
        step_end = held + timedelta(seconds=extra)
        final_due = False  # the deciding look, when the hold time ran out during a look
        while True:
            if not final_due:
                at = ctx.current_utc_datetime + timedelta(seconds=rules["look_seconds"])
                if ctx.current_utc_datetime < step_end:  # the last look of a step falls on its end; a
                    at = min(at, step_end)  # paused step, past it, still looks a look apart
                yield ctx.create_timer(at)
            now = ctx.current_utc_datetime
            last = i == deciding and now >= step_end
            out = yield ctx.call_activity("analyse", {**cfg, "history": history, "state": state, "last_step": last,
                                                      "share": share, "may_promote": i == deciding and now >= held,
                                                      "business": i <= deciding})  # fmt: skip
            history, state, look = out["history"], out["state"], out["look"]
            # the decision carries the numbers it was taken on (the progress document may be stale)
            decision = {**look["decision"], "look": {k: look.get(k) for k in ("at", "share", "ctr", "cvr")}}
            yield publish(decision=decision, look=look)  # the activity appends the look to the API's copy
            if decision["action"] == "rollback" or (decision["action"] == "promote" and i == n_steps - 1):
                return decision, history, share
            if decision["action"] == "promote":
                if decision["rule"] == "operator_promote":
                    return decision, history, share
                shown = decision  # shown no worse: on to the full load, guarded
                break
            if ctx.current_utc_datetime >= step_end and not look.get("paused"):
                if i == deciding and not last:
                    final_due = True  # the look began before the end: decide at once, not a look later
                    continue
                break  # a paused canary holds its step until it is resumed, promoted or rolled back
            final_due = False
    if shown is not None and decision["action"] == "continue":
        decision = shown  # the full-load step passed its guards
    return decision, history, share


def _rollback_input(
    cfg: dict[str, Any], decision: dict[str, Any], share: float, restore: bool
) -> dict[str, Any]:
    return {**cfg, "reason": decision["reason"], "rule": decision["rule"], "acute": bool(decision.get("acute")),
            "look": decision.get("look"),
            "share": share, "restore_champion": restore}  # fmt: skip


def watch_champion(ctx: Context) -> Orchestration:
    """The guards (no business test: there is no other arm) on the new champion for
    ``watch_seconds``; returns the first decision that is not "continue", or a continue."""
    cfg: dict[str, Any] = dict(ctx.get_input() or {})
    rules = cfg["rules"]
    end = ctx.current_utc_datetime + timedelta(seconds=rules["watch_seconds"])
    history: list[dict[str, Any]] = cfg["history"]
    state: dict[str, Any] = {}
    while ctx.current_utc_datetime < end:
        yield ctx.create_timer(min(ctx.current_utc_datetime + timedelta(seconds=rules["look_seconds"]), end))
        out = yield ctx.call_activity("analyse", {**cfg, "history": history, "state": state, "last_step": False,
                                                  "variant": "champion", "business": False})  # fmt: skip
        history, state = out["history"], out["state"]
        if out["look"]["decision"]["action"] == "rollback":
            return dict(out["look"]["decision"])
    return {"action": "continue", "rule": "", "reason": "the new champion stayed healthy"}


def rollback(ctx: Context) -> Orchestration:
    """Challenger traffic back to 0 — at once when ``acute``, else down the canary's steps one
    look apart — the champion restored where it moved (``restore_champion``), a health check
    of what is served, the event recorded. Returns ``{"healthy", "reason", "traffic_steps"}``."""
    cfg: dict[str, Any] = dict(ctx.get_input() or {})
    rules = cfg["rules"]
    shares = [0.0]
    if not cfg.get("acute") and not cfg.get("restore_champion"):
        # down the canary's own steps, one look apart (three at most), then none
        shares = [*[s for s in reversed(rules["steps"]) if s < cfg.get("share", 0.0)][:3], 0.0]
    for j, share in enumerate(shares):
        if j:
            yield ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=rules["look_seconds"]))
        yield ctx.call_activity(
            "set_traffic", {**cfg, "share": share, "reason": f"rollback: {cfg['reason']}"}
        )
    back_at = _iso(ctx.current_utc_datetime)  # every shopper on the champion from here
    yield ctx.call_activity("rollback_models", cfg)
    health: dict[str, Any] = {"healthy": False, "reason": "not checked"}
    for attempt in range(5):
        health = yield ctx.call_activity("health_check", cfg)
        if health["healthy"]:
            break
        yield ctx.create_timer(
            ctx.current_utc_datetime + timedelta(seconds=min(rules["look_seconds"], 5.0) * (attempt + 1))
        )
    yield ctx.call_activity("record", {**cfg, "action": "rollback", "health": health})
    return {
        "healthy": health["healthy"],
        "reason": health["reason"],
        "traffic_steps": shares,
        "champion_at": back_at,
    }


ORCHESTRATORS = {RETRAIN: retrain, ROLLBACK: rollback, "watch_champion": watch_champion}
