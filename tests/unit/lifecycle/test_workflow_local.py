"""The orchestrators on the Durable Task SDK's in-memory backend (real replay over gRPC, real
timers of a fraction of a second), with scripted activities: every path of the workflow."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from recommndr.errors import RecommndrError
from recommndr.lifecycle.local import run_workflow

pytestmark = pytest.mark.unit
RULES = {"steps": [0.05, 0.25, 0.5, 1.0], "step_seconds": 0.2, "look_seconds": 0.1, "watch_seconds": 0.0}


class World:
    """Scripted activities: what each returns, and every call in order (activities run on the
    worker's threads, and a replay never calls them again)."""

    def __init__(self, decisions: list[dict[str, Any]] | None = None, **overrides: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.decisions = list(decisions or [])
        self.overrides = overrides

    def _analyse(self, cfg: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            d = self.decisions.pop(0) if self.decisions else None
        if d is None:
            action = "promote" if cfg["last_step"] else "continue"
            d = {
                "action": action,
                "rule": "msprt_noninferior" if action == "promote" else "",
                "reason": "",
                "acute": False,
            }
        return {"history": [*cfg["history"][-2:], {"at": len(self.calls)}], "state": {"n": cfg["state"].get("n", 0) + 1},
                "look": {"decision": d, "paused": d.get("rule") == "paused"}}  # fmt: skip

    def activities(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        answers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "validate_data": lambda c: {"valid": True, "reason": "ok", "evaluated": 3, "failures": []},
            "train_challenger": lambda c: {
                "run_id": "r1",
                "versions": {"m": "2"},
                "metric": 0.3,
                "artifacts": "/x",
                "model_version": "v2",
            },
            "gate": lambda c: {"passed": True, "has_champion": True, "reason": "within tolerance"},
            "reject": lambda c: {"rejected": True},
            "start_canary": lambda c: {"baseline": {"at": 0.0}, "champion": {"model_version": "v1"}},
            "set_traffic": lambda c: {"traffic": {"challenger": c["share"]}},
            "analyse": self._analyse,
            "promote": lambda c: {"promoted": {"m": "2"}},
            "rollback_models": lambda c: {"restored": None},
            "health_check": lambda c: {"healthy": True, "reason": "ready"},
            "record": lambda c: {"run_id": "d1"},
            "publish_progress": lambda c: {"published": True},
        }
        answers.update(self.overrides)

        def wrap(
            name: str, fn: Callable[[dict[str, Any]], dict[str, Any]]
        ) -> Callable[[dict[str, Any]], dict[str, Any]]:
            def call(cfg: dict[str, Any]) -> dict[str, Any]:
                with self.lock:
                    self.calls.append((name, cfg))
                return fn(cfg)

            return call

        return {n: wrap(n, f) for n, f in answers.items()}

    def names(self, *skip: str) -> list[str]:
        return [n for n, _ in self.calls if n not in ("publish_progress", *skip)]

    def shares(self) -> list[float]:
        return [c["share"] for n, c in self.calls if n == "set_traffic"]


def run(world: World, **rules: Any) -> dict[str, Any]:
    return run_workflow(
        {"api": "http://x", "rules": {**RULES, **rules}}, timeout_s=60, activities=world.activities()
    )


def test_a_good_challenger_climbs_every_step_and_is_promoted() -> None:
    w = World()
    out = run(w)
    assert out["outcome"] == "promoted" and out["rule"] == "msprt_noninferior"
    assert w.shares() == [0.05, 0.25, 0.5, 1.0]
    names = w.names("analyse", "set_traffic")
    assert names == ["validate_data", "train_challenger", "gate", "start_canary", "promote"]
    assert [s["step"] for s in out["steps"]][:3] == ["validate", "train", "gate"]
    # the analysis' state travels from look to look
    looks = [c for n, c in w.calls if n == "analyse"]
    assert [c["state"].get("n", 0) for c in looks] == list(range(len(looks)))
    assert sum(c["last_step"] for c in looks) == 1  # only the last look of the last step decides
    assert all(c["instance_id"] == out["instance_id"] for _, c in w.calls)


def test_an_acute_fault_rolls_back_at_once_and_a_business_one_steps_down() -> None:
    acute = {"action": "rollback", "rule": "errors", "reason": "error rate 10%", "acute": True}
    w = World([{"action": "continue", "rule": "", "reason": "", "acute": False}] * 4 + [acute])
    out = run(w)
    assert out["outcome"] == "rolled_back" and out["rule"] == "errors" and out["rollback"]["healthy"]
    assert w.shares() == [0.05, 0.25, 0.5, 0.0]  # straight to 0 from the 50 % step
    assert w.names("analyse", "set_traffic")[-3:] == ["rollback_models", "health_check", "record"]
    slow = {"action": "rollback", "rule": "msprt_ctr", "reason": "ctr below", "acute": False}
    w = World([{"action": "continue", "rule": "", "reason": "", "acute": False}] * 4 + [slow])
    out = run(w)
    assert out["outcome"] == "rolled_back" and w.shares() == [0.05, 0.25, 0.5, 0.25, 0.05, 0.0]


def test_invalid_data_and_a_failed_gate_are_rejected_before_any_traffic_moves() -> None:
    w = World(
        validate_data=lambda c: {
            "valid": False,
            "reason": "2 of 9 expectations failed",
            "evaluated": 9,
            "failures": [],
        }
    )
    out = run(w)
    assert out["outcome"] == "rejected" and "expectations failed" in out["reason"]
    assert w.names() == ["validate_data", "record"] and not w.shares()
    w = World(gate=lambda c: {"passed": False, "has_champion": True, "reason": "ndcg 0.1 < 0.3"})
    out = run(w)
    assert out["outcome"] == "rejected" and w.names() == [
        "validate_data",
        "train_challenger",
        "gate",
        "reject",
    ]


def test_the_first_model_is_promoted_without_a_canary() -> None:
    w = World(gate=lambda c: {"passed": True, "has_champion": False, "reason": "no champion yet"})
    out = run(w)
    assert out["outcome"] == "promoted" and w.names()[-1] == "promote" and not w.shares()


def test_a_pause_holds_the_step_past_its_hold_time() -> None:
    paused = {"action": "continue", "rule": "paused", "reason": "paused", "acute": False}
    w = World([paused] * 8)
    out = run(w)
    assert out["outcome"] == "promoted"
    looks = [c for n, c in w.calls if n == "analyse"]
    first_step = [c for c in looks if c["share"] == 0.05]
    assert len(first_step) >= 8  # 8 paused looks held the 5 % step (2 looks fill its hold time)


def test_a_promoted_champion_is_watched_and_restored_when_a_guard_fires() -> None:
    bad = {"action": "rollback", "rule": "latency_p95", "reason": "p95 0.6 s", "acute": True}
    w = World()

    def analyse(cfg: dict[str, Any]) -> dict[str, Any]:
        if cfg.get("variant") == "champion":
            assert cfg["business"] is False
            return {"history": cfg["history"], "state": {}, "look": {"decision": bad}}
        return w._analyse(cfg)

    w.overrides["analyse"] = analyse
    out = run(w, watch_seconds=0.3)
    assert out["outcome"] == "rolled_back" and out["after_promotion"] and out["rule"] == "latency_p95"
    restore = [c for n, c in w.calls if n == "rollback_models"]
    assert restore and restore[0]["restore_champion"] is True


def test_an_activity_that_fails_fails_the_workflow_with_its_message() -> None:
    def boom(cfg: dict[str, Any]) -> dict[str, Any]:
        raise RecommndrError("the API at http://x could not be reached")

    with pytest.raises(RecommndrError, match="could not be reached"):
        run(World(start_canary=boom))


def test_an_activity_failing_mid_canary_rolls_the_challenger_back_at_once() -> None:
    looks = []

    def flaky(cfg: dict[str, Any]) -> dict[str, Any]:
        looks.append(cfg["share"])
        if cfg["share"] == 0.25:
            raise RecommndrError("GET /metrics: the API answered 503")
        return w._analyse(cfg)

    w = World(analyse=flaky)
    out = run(w)
    assert out["outcome"] == "rolled_back" and out["rule"] == "workflow_error" and "503" in out["reason"]
    assert w.shares() == [0.05, 0.25, 0.0]


def test_a_look_that_outlasts_the_last_step_is_followed_by_the_deciding_one() -> None:
    import time

    w = World()

    def analyse(cfg: dict[str, Any]) -> dict[str, Any]:
        time.sleep(0.3)  # longer than a step: the hold time runs out during every look
        return w._analyse(cfg)

    w.overrides["analyse"] = analyse
    out = run(w)
    assert out["outcome"] == "promoted"
    deciding = [c["last_step"] for n, c in w.calls if n == "analyse" and c["share"] == 0.5]
    assert deciding[-2:] == [False, True]
