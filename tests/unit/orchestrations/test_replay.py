"""The registered orchestrators replayed by azure-functions-durable over histories written here
(tests/unit/orchestrations/history.py): what they ask for at each point, that replaying is
deterministic, and that a history recorded by other code is caught."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from typing import Any

import pytest

from tests.unit.orchestrations.conftest import CONTINUE, Shop
from tests.unit.orchestrations.history import T0, History, NonDeterminismError, drive, nondeterminism, replay

pytestmark = pytest.mark.unit
ROLLBACK_DECISION = {
    "action": "rollback",
    "rule": "errors",
    "reason": "12 % of answers failed",
    "acute": True,
}


def names(result: Any) -> list[str]:
    return [a.name or "timer" for a in result.actions if a.name != "publish_progress"]


# --- retrain ------------------------------------------------------------------------------------
def test_an_empty_history_publishes_then_validates(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    h = History("retrain", loop_input, instance_id="retrain-1")
    first = replay(loop_functions["retrain"], h)
    assert not first.done and first.error is None
    assert [(a.kind, a.name) for a in first.actions] == [("activity", "publish_progress")]
    progress = first.actions[0].input["progress"]
    assert progress["status"] == "validating" and progress["instance_id"] == "retrain-1"
    assert progress["started_at"] == "2026-12-01T03:00:00Z"  # the context's clock: the episode's start
    assert first.custom_status == {"status": "validating", "step": None, "share": 0.0}

    h.activity("publish_progress", {"published": True})
    second = replay(loop_functions["retrain"], h)
    assert [a.name for a in second.actions] == ["publish_progress", "validate_data"]
    assert (
        second.actions[1].input["data"] == "/data/shop"
        and second.actions[1].input["instance_id"] == "retrain-1"
    )


def test_a_failed_validation_ends_rejected(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    h = History("retrain", loop_input)
    h.activity("publish_progress", {"published": True})
    h.activity("validate_data", {"valid": False, "reason": "3 of 40 expectations failed: events.ts",
                                 "evaluated": 40, "failures": ["events.ts"]})  # fmt: skip
    asked = replay(loop_functions["retrain"], h)
    assert [a.name for a in asked.actions][-1] == "publish_progress"
    assert asked.actions[-1].input["progress"]["status"] == "rejected"
    h.activity("publish_progress", {"published": True})
    h.activity("record", {"run_id": "r"})
    end = replay(loop_functions["retrain"], h)
    assert end.done and end.error is None
    assert [a.name for a in end.actions] == [
        "publish_progress",
        "validate_data",
        "publish_progress",
        "record",
    ]
    assert end.actions[3].input["action"] == "rejected" and end.actions[3].input["rule"] == "validation"
    assert end.output["outcome"] == "rejected"
    assert end.output["reason"] == "3 of 40 expectations failed: events.ts"
    assert end.output["seconds"] == 4.0  # four activities, one second each on the history's clock
    assert "train_challenger" not in names(end)


def test_a_look_that_says_rollback_calls_the_rollback_orchestration(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    """Train, gate, canary at 5 %, a timer, a look that continues, a timer, a look that rolls back."""
    h = History("retrain", loop_input, instance_id="retrain-7")
    shop = Shop().results()
    for name in ("publish_progress", "validate_data", "publish_progress", "train_challenger",
                 "publish_progress", "gate", "start_canary"):  # fmt: skip
        h.activity(name, shop[name]({"share": 0.05}))
    h.activity("set_traffic", {"traffic": {"champion": 0.95, "challenger": 0.05}})
    h.activity("publish_progress", {"published": True})
    first_look = h.now + timedelta(seconds=20)
    h.timer(first_look)
    h.activity("analyse", {"history": [], "state": {}, "look": {"decision": CONTINUE}})
    h.activity("publish_progress", {"published": True})
    asked = replay(loop_functions["retrain"], h)
    assert asked.actions[-1].kind == "timer"
    assert asked.actions[-1].fire_at == h.now + timedelta(seconds=20)  # the next look, one look on
    h.timer(asked.actions[-1].fire_at)  # type: ignore[arg-type]
    h.activity("analyse", {"history": [], "state": {}, "look": {"decision": ROLLBACK_DECISION}})
    h.activity("publish_progress", {"published": True})
    h.activity("publish_progress", {"published": True})  # status rolling_back
    result = replay(loop_functions["retrain"], h)
    call = result.actions[-1]
    assert (call.kind, call.name, call.instance_id) == ("sub", "rollback", "retrain-7-rollback")
    assert (
        call.input["acute"] is True
        and call.input["share"] == 0.05
        and call.input["restore_champion"] is False
    )
    assert call.input["rule"] == "errors" and call.input["reason"] == "12 % of answers failed"
    assert not result.done
    assert nondeterminism(h, result) is None

    h.sub_created("rollback", "retrain-7-rollback")
    h.episode()
    h.sub_completed(len(h.recorded()) - 1, {"healthy": True, "reason": "ready", "traffic_steps": [0.0]})
    h.activity("publish_progress", {"published": True})
    end = replay(loop_functions["retrain"], h)
    assert end.done and end.output["outcome"] == "rolled_back" and end.output["rule"] == "errors"
    assert end.output["rollback"] == {"healthy": True, "reason": "ready", "traffic_steps": [0.0]}


def test_a_healthy_canary_walks_every_step_and_promotes(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    shop = Shop()
    h = History("retrain", loop_input)
    end = drive(loop_functions["retrain"], h, shop.results())
    assert end.done and end.output["outcome"] == "promoted" and end.output["rule"] == "business"
    assert [i["share"] for i in shop.inputs("set_traffic")] == [0.05, 0.25, 0.5, 1.0]
    # 60 s per step, a look every 20 s: each step's looks end at the step's end, never past it; the
    # 50 % step decides (inconclusive here until its extension of 4 steps ends), the 100 % step guards
    looks = [i for i in shop.inputs("analyse")]
    # (each look also waits for two activities of a second: 14, not 15, fit in the held step and its extension)
    assert len(looks) == 3 + 3 + 14 + 3 and [i["last_step"] for i in looks].count(True) == 1
    deciding = next(i for i in looks if i["last_step"])
    assert deciding["share"] == 0.5 and looks[-1]["share"] == 1.0 and looks[-1]["business"] is False
    timers = [a.fire_at for a in end.actions if a.kind == "timer"]
    assert all(b > a for a, b in itertools.pairwise(timers))
    assert names(end)[-1] == "promote" and "rollback" not in names(end)
    assert end.custom_status == {"status": "promoted", "step": 3, "share": 1.0}


def test_a_promotion_is_watched_and_undone_when_the_champion_fails(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    loop_input["rules"]["watch_seconds"] = 60.0
    shop = Shop()
    results = {**shop.results(), "watch_champion": lambda i: ROLLBACK_DECISION}
    h = History("retrain", loop_input, instance_id="retrain-3")
    end = drive(loop_functions["retrain"], h, results)
    subs = [a for a in end.actions if a.kind == "sub"]
    assert [(a.name, a.instance_id) for a in subs] == [("watch_champion", "retrain-3-watch"),
                                                       ("rollback", "retrain-3-rollback")]  # fmt: skip
    assert subs[1].input["restore_champion"] is True and subs[1].input["share"] == 1.0
    assert end.output["outcome"] == "rolled_back" and end.output["after_promotion"] is True


def test_a_paused_canary_past_its_step_waits_a_whole_look(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    """Paused on the last look of step 1: the canary holds, looking once per look_seconds — not
    at the step's end again, which has passed (a timer in the past fires at once: a busy loop of
    looks against the API)."""
    shop = Shop(lambda n, i: {**CONTINUE, "paused": True} if 2 <= n <= 5 else
                ({"action": "promote", "rule": "business", "reason": "ok"} if i["last_step"] else CONTINUE))  # fmt: skip
    h = History("retrain", loop_input)
    end = drive(loop_functions["retrain"], h, shop.results())
    assert end.done and end.output["outcome"] == "promoted"
    timers = [a.fire_at for a in end.actions if a.kind == "timer"]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(timers)]
    # 20 s looks in a 60 s step: 22 s (a look, then two activities of a second), 18 s to the
    # step's end; then, paused past it, a look and the activities each time, never 0 s
    assert gaps[:6] == [22.0, 18.0, 22.0, 22.0, 22.0, 22.0], gaps


# --- determinism ----------------------------------------------------------------------------------
@pytest.mark.parametrize("schema", [0, 1], ids=["replay-schema-V1", "replay-schema-V2"])
def test_replaying_a_recorded_history_asks_for_the_same_actions(loop_functions, loop_input, schema) -> None:  # type: ignore[no-untyped-def]
    shop = Shop(lambda n, i: ROLLBACK_DECISION if n == 4 else CONTINUE)
    h = History("retrain", loop_input, schema=schema)
    end = drive(loop_functions["retrain"], h, shop.results())  # checks each replay against the history
    assert end.output["outcome"] == "rolled_back"
    again, third = replay(loop_functions["retrain"], h), replay(loop_functions["retrain"], h)
    assert json.dumps(again.state, sort_keys=True) == json.dumps(third.state, sort_keys=True)
    assert again.actions == end.actions and again.output == end.output
    assert len(again.actions) == len(h.recorded()) and nondeterminism(h, again) is None


def test_a_history_recorded_by_other_code_is_caught_by_the_hosts_check(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    """An activity renamed in the recorded history: the library itself replays it without a word
    (it resolves tasks by sequence number and never reads TaskScheduled), so the actions are the
    same; the host's comparison — the one the Durable extension makes — names the event."""
    h = History("retrain", loop_input)
    drive(loop_functions["retrain"], h, Shop().results())
    honest = replay(loop_functions["retrain"], h)
    gate = next(e for e in h.events if e.get("Name") == "gate")
    gate["Name"] = "offline_gate"  # what an older version of the workflow called it
    tampered = replay(loop_functions["retrain"], h)
    assert tampered.actions == honest.actions and tampered.done  # the library did not notice
    problem = nondeterminism(h, tampered)
    assert problem is not None and "offline_gate" in problem and "'gate'" in problem
    with pytest.raises(NonDeterminismError, match="offline_gate"):
        drive(loop_functions["retrain"], h, Shop().results())


def test_a_timer_recorded_where_the_code_calls_an_activity_replays_on(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    """Nor does the library compare kinds: a history whose first task was a timer resolves the
    code's first task (publishing the progress, whose answer it ignores) with the timer's empty
    result, and the replay runs on to training. Only the host's comparison stops it."""
    h = History("retrain", loop_input)
    timer = h.timer_created(T0 + timedelta(seconds=5))
    h.episode(T0 + timedelta(seconds=5))
    h.timer_fired(timer, T0 + timedelta(seconds=5))
    h.activity("validate_data", {"valid": True, "reason": "", "evaluated": 1, "failures": []})
    result = replay(loop_functions["retrain"], h)
    assert result.error is None and result.custom_status["status"] == "training"
    assert nondeterminism(h, result) == (
        "event 0: the history has ('timer', None, None), the code asked for ('activity', 'publish_progress', None)"
    )


def test_a_failed_activity_fails_the_orchestration_with_its_reason(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    h = History("retrain", loop_input)
    h.activity("publish_progress", {"published": True})
    h.activity("validate_data", {"valid": True, "reason": "", "evaluated": 1, "failures": []})
    h.activity("publish_progress", {"published": True})
    task = h.scheduled("train_challenger")
    h.episode()
    h.failed(task, "RecommndrError: the dataset has no events", "Traceback ...")
    result = replay(loop_functions["retrain"], h)
    assert not result.done and "the dataset has no events" in (result.error or "")


def test_an_activity_failing_mid_canary_rolls_the_challenger_back(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    """The library throws a TaskFailed into the generator where it waits (inside the canary's
    own generator, through ``yield from``): the workflow catches it and rolls back at once."""
    shop = Shop()
    results = shop.results()
    looks = iter([True, False])

    def analyse(input_: Any) -> Any:
        if next(looks):
            return results["analyse"](input_)
        raise RuntimeError("GET /metrics: the API answered 503")

    h = History("retrain", loop_input, instance_id="retrain-9")
    end = drive(loop_functions["retrain"], h, {**results, "analyse": analyse})
    failed = [e for e in h.events if e["EventType"] == 6]  # TaskFailed
    assert len(failed) == 1 and "503" in failed[0]["Reason"]
    call = [a for a in end.actions if a.kind == "sub"][-1]
    assert (call.name, call.instance_id, call.input["rule"]) == (
        "rollback",
        "retrain-9-rollback",
        "workflow_error",
    )
    assert call.input["acute"] is True and call.input["share"] == 0.05
    assert "503" in call.input["reason"]
    assert end.done and end.output["outcome"] == "rolled_back" and end.output["rule"] == "workflow_error"


# --- rollback -------------------------------------------------------------------------------------
def rollback_input(loop_input: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**loop_input, "reason": "12 % of answers failed", "rule": "errors", "acute": True,
            "share": 0.5, "restore_champion": False, **changes}  # fmt: skip


def test_an_acute_rollback_moves_traffic_to_zero_at_once(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    shop = Shop()
    h = History("rollback", rollback_input(loop_input))
    end = drive(loop_functions["rollback"], h, shop.results())
    assert [(a.kind, a.name) for a in end.actions] == [("activity", "set_traffic"), ("activity", "rollback_models"),
                                                       ("activity", "health_check"), ("activity", "record")]  # fmt: skip
    assert [i["share"] for i in shop.inputs("set_traffic")] == [0.0]
    assert shop.inputs("set_traffic")[0]["reason"] == "rollback: 12 % of answers failed"
    assert shop.inputs("record")[0]["health"]["healthy"] is True
    assert end.output == {
        "healthy": True,
        "reason": "ready; champion v1 serves every user",
        "traffic_steps": [0.0],
        "champion_at": end.output["champion_at"],  # the replay's clock when traffic reached 0
    }
    assert end.output["champion_at"].endswith("Z")


def test_a_gradual_rollback_walks_down_the_steps_a_look_apart(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    shop = Shop()
    h = History("rollback", rollback_input(loop_input, acute=False, share=0.5))
    end = drive(loop_functions["rollback"], h, shop.results())
    assert [i["share"] for i in shop.inputs("set_traffic")] == [0.25, 0.05, 0.0]
    kinds = [a.name or "timer" for a in end.actions]
    assert kinds == ["set_traffic", "timer", "set_traffic", "timer", "set_traffic", "rollback_models",
                     "health_check", "record"]  # fmt: skip
    traffic_at = [h.events[i]["Timestamp"] for i, e in enumerate(h.events) if e.get("Name") == "set_traffic"]
    assert traffic_at[0] < traffic_at[1] < traffic_at[2]
    timers = [a.fire_at for a in end.actions if a.kind == "timer"]
    assert (timers[1] - timers[0]).total_seconds() == 21.0  # a look (20 s) and the activity's second
    assert end.output["traffic_steps"] == [0.25, 0.05, 0.0]


def test_a_rollback_checks_health_again_with_growing_waits(loop_functions, loop_input) -> None:  # type: ignore[no-untyped-def]
    shop = Shop()
    checks = iter([{"healthy": False, "reason": "the challenger still gets 5% of users"}] * 2
                  + [{"healthy": True, "reason": "ready"}])  # fmt: skip
    h = History("rollback", rollback_input(loop_input, restore_champion=True))
    end = drive(loop_functions["rollback"], h, {**shop.results(), "health_check": lambda i: next(checks)})
    kinds = [a.name or "timer" for a in end.actions]
    assert kinds == ["set_traffic", "rollback_models", "health_check", "timer", "health_check", "timer",
                     "health_check", "record"]  # fmt: skip
    assert shop.inputs("rollback_models")[0]["restore_champion"] is True
    fired = [a.fire_at for a in end.actions if a.kind == "timer"]
    assert fired[0] is not None and fired[1] is not None
    # 5 s after the first check, then 10 s after the second (which ran 1 s after the first wait)
    assert (fired[1] - fired[0]).total_seconds() == 1.0 + 10.0
    assert end.output["healthy"] is True
