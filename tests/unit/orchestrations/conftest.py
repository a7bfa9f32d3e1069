"""The loop's Functions as the worker sees them, and scripted activity results for the replays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

from orchestrations import loop
from recommndr.lifecycle.activities import LoopInput

RULES = {"steps": [0.05, 0.25, 0.5, 1.0], "step_seconds": 60.0, "look_seconds": 20.0}
CONTINUE = {"action": "continue", "rule": "", "reason": ""}


@pytest.fixture(scope="session")
def loop_functions() -> dict[str, Callable[..., Any]]:
    """Each Function of the blueprint by name: the user function the worker calls (for an
    orchestrator, the library's handler that replays the generator over the context JSON)."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(loop.blueprint())
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()}


@pytest.fixture
def loop_input() -> dict[str, Any]:
    """An orchestration input as the starters build it (LoopInput as JSON), with short holds."""
    cfg = LoopInput(data="/data/shop", out_root="/data/loop/bundles", api="http://api.test",
                    tracking_uri="sqlite:///mlflow.db", audit_path="/data/audit.jsonl", rules=RULES)  # fmt: skip
    return cfg.model_dump(mode="json")


class Shop:
    """Scripted activity and sub-orchestration results: a healthy run by default; ``decide(n, input)``
    gives the decision of the n-th look (from 0); every input each activity got is kept."""

    def __init__(self, decide: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.decide = decide or (lambda n, i: {"action": "promote", "rule": "business", "reason": "no worse"}
                                 if i["last_step"] else CONTINUE)  # fmt: skip
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.looks = 0

    def results(self) -> dict[str, Callable[[Any], Any]]:
        fixed: dict[str, dict[str, Any]] = {
            "publish_progress": {"published": True},
            "validate_data": {"valid": True, "reason": "40 expectations met", "evaluated": 40, "failures": []},
            "train_challenger": {"run_id": "run-2", "versions": {"recommndr-ranker": "2", "recommndr-retrieval": "2"},
                                 "metric": 0.31, "artifacts": "/data/loop/bundles/c", "model_version": "v2"},
            "gate": {"passed": True, "has_champion": True, "reason": "0.31 >= 0.30 - 0.02"},
            "start_canary": {"baseline": {"at": 0.0}, "champion": {"model_version": "v1"}, "started_at": 0.0},
            "promote": {"promoted": {"recommndr-ranker": "2"}},
            "reject": {"rejected": True},
            "record": {"run_id": "decision-run"},
            "rollback_models": {"restored": None},
            "health_check": {"healthy": True, "reason": "ready; champion v1 serves every user"},
            "rollback": {"healthy": True, "reason": "ready", "traffic_steps": [0.0]},
            "watch_champion": {"action": "continue", "rule": "", "reason": "the new champion stayed healthy"},
        }  # fmt: skip

        def answer(name: str) -> Callable[[Any], Any]:
            def call(input_: Any) -> Any:
                self.calls.append((name, input_))
                if name == "set_traffic":
                    return {"traffic": {"champion": 1 - input_["share"], "challenger": input_["share"]}}
                if name == "analyse":
                    decision = self.decide(self.looks, input_)
                    self.looks += 1
                    look = {
                        "share": input_["share"],
                        "decision": decision,
                        "paused": decision.get("paused", False),
                    }
                    return {"history": [*input_["history"], {"at": float(self.looks)}][-3:],
                            "state": {"looks": self.looks}, "look": look}  # fmt: skip
                return fixed[name]

            return call

        return {name: answer(name) for name in [*fixed, "set_traffic", "analyse"]}

    def inputs(self, name: str) -> list[dict[str, Any]]:
        return [i for n, i in self.calls if n == name]
