"""Orchestration histories for the replay tests, and a stand-in for the Functions host.

On Azure the Durable extension runs a Python orchestrator by handing it the whole history so far
as JSON (the out-of-process protocol) on every episode; azure-functions-durable replays the
generator over it — each completion event resolves the task with the same sequence number — and
returns the actions the code asked for, all of them from the start (replay schema V1: a list of
one-action lists; V2: one flat list). :class:`History` writes that JSON event by event,
:func:`replay` runs a registered orchestrator's user function over it, and :func:`drive` plays
the host: it records each new action (TaskScheduled, TimerCreated,
SubOrchestrationInstanceCreated), completes it in the next episode with a scripted result, and
checks on every replay that the code still asks for what the history recorded.

That check is the host's, not the library's: azure-functions-durable 1.7 never reads the
TaskScheduled, TimerCreated or SubOrchestrationInstanceCreated events (it matches completions by
sequence number only), so a history recorded by other code replays silently unless the host
compares — :func:`nondeterminism` does what the extension's replay does ("Non-Deterministic
workflow detected").

The event fields are those the host sends (see ``azure/durable_functions/models/history``):
every event has ``EventType``, ``EventId``, ``IsPlayed`` and ``Timestamp``; ExecutionStarted has
``Name``, ``Input`` (JSON text) and ``Version`` (the library reads it from this event: without the
key the context cannot be built); TaskScheduled ``Name`` and ``Input``; TaskCompleted
``TaskScheduledId`` and ``Result`` (JSON text); TaskFailed ``TaskScheduledId``, ``Reason``,
``Details``; TimerCreated and TimerFired ``FireAt`` (TimerFired's ``TimerId`` is the timer's
EventId); SubOrchestrationInstanceCreated ``Name``, ``InstanceId``, ``Input``, and its Completed
``TaskScheduledId`` and ``Result``. The clock of the orchestration is the Timestamp of the latest
OrchestratorStarted, so the time an episode starts at is what ``current_utc_datetime`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as E

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"  # the host's (and the library's) timestamp format
ERROR_LABEL = "$OutOfProcData$:"  # the library puts the state after it in a failing replay's error
# what each recorded event and each action kind are, for the host's comparison
SCHEDULED = {
    E.TASK_SCHEDULED: "activity",
    E.TIMER_CREATED: "timer",
    E.SUB_ORCHESTRATION_INSTANCE_CREATED: "sub",
}
KINDS = {ActionType.CALL_ACTIVITY: "activity", ActionType.CREATE_TIMER: "timer",
         ActionType.CALL_SUB_ORCHESTRATOR: "sub"}  # fmt: skip


class NonDeterminismError(AssertionError):
    """The code asked for something else than the history recorded at that place."""


@dataclass(frozen=True)
class Action:
    """One action an orchestrator returned, decoded."""

    kind: str  # activity, timer or sub
    name: str | None = None
    input: Any = None
    fire_at: datetime | None = None
    instance_id: str | None = None


@dataclass(frozen=True)
class Replay:
    """What one replay returned: every action from the start, and the state."""

    actions: list[Action]
    done: bool
    output: Any
    error: str | None
    custom_status: Any
    state: dict[str, Any]


class History:
    """One orchestration's history, as the host would send it; events append in order and each
    method says which one it writes. ``schema``: the replay schema the host announces (0: V1)."""

    def __init__(self, name: str, input_: Any, instance_id: str = "loop-1", at: datetime = T0,
                 schema: int = 0) -> None:  # fmt: skip
        self.name, self.input, self.instance_id, self.schema = name, input_, instance_id, schema
        self.now = at
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._event(E.ORCHESTRATOR_STARTED)
        self._event(E.EXECUTION_STARTED, Name=name, Input=json.dumps(input_), Version="")

    # --- events -----------------------------------------------------------------------------
    def _event(self, kind: E, event_id: int = -1, **fields: Any) -> dict[str, Any]:
        event = {"EventType": int(kind), "EventId": event_id, "IsPlayed": False,
                 "Timestamp": self.now.strftime(ISO), **fields}  # fmt: skip
        self.events.append(event)
        return event

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def episode(self, at: datetime | None = None) -> None:
        """OrchestratorCompleted, then OrchestratorStarted at ``at`` (default: one second on):
        the code has returned its actions; the host wakes it again when something completes."""
        self._event(E.ORCHESTRATOR_COMPLETED)
        self.now = max(self.now, at or self.now + timedelta(seconds=1))
        self._event(E.ORCHESTRATOR_STARTED)

    def scheduled(self, name: str, input_: Any = None) -> int:
        """TaskScheduled; returns its sequence number."""
        return int(self._event(E.TASK_SCHEDULED, self._id(), Name=name, Input=json.dumps(input_))["EventId"])

    def completed(self, task: int, result: Any) -> None:
        """TaskCompleted with the activity's result."""
        self._event(E.TASK_COMPLETED, TaskScheduledId=task, Result=json.dumps(result))

    def failed(self, task: int, reason: str, details: str = "") -> None:
        """TaskFailed (the activity raised)."""
        self._event(E.TASK_FAILED, TaskScheduledId=task, Reason=reason, Details=details)

    def timer_created(self, fire_at: datetime) -> int:
        """TimerCreated; returns its sequence number."""
        return int(self._event(E.TIMER_CREATED, self._id(), FireAt=fire_at.strftime(ISO))["EventId"])

    def timer_fired(self, timer: int, fire_at: datetime) -> None:
        """TimerFired."""
        self._event(E.TIMER_FIRED, TimerId=timer, FireAt=fire_at.strftime(ISO))

    def sub_created(self, name: str, instance_id: str | None, input_: Any = None) -> int:
        """SubOrchestrationInstanceCreated; returns its sequence number."""
        return int(self._event(E.SUB_ORCHESTRATION_INSTANCE_CREATED, self._id(), Name=name,
                               InstanceId=instance_id, Input=json.dumps(input_))["EventId"])  # fmt: skip

    def sub_completed(self, task: int, result: Any) -> None:
        """SubOrchestrationInstanceCompleted with the sub-orchestration's output."""
        self._event(E.SUB_ORCHESTRATION_INSTANCE_COMPLETED, TaskScheduledId=task, Result=json.dumps(result))

    # --- shorthands: a task asked for in this episode, its result in the next one ---------------
    def activity(self, name: str, result: Any, input_: Any = None, seconds: float = 1.0) -> int:
        task = self.scheduled(name, input_)
        self.episode(self.now + timedelta(seconds=seconds))
        self.completed(task, result)
        return task

    def timer(self, fire_at: datetime) -> int:
        timer = self.timer_created(fire_at)
        self.episode(fire_at)
        self.timer_fired(timer, fire_at)
        return timer

    def sub(self, name: str, result: Any, instance_id: str | None = None, seconds: float = 1.0) -> int:
        task = self.sub_created(name, instance_id)
        self.episode(self.now + timedelta(seconds=seconds))
        self.sub_completed(task, result)
        return task

    # --- what the host sends --------------------------------------------------------------------
    def recorded(self) -> list[dict[str, Any]]:
        """The events that record an action, in order."""
        return [e for e in self.events if E(e["EventType"]) in SCHEDULED]

    def to_json(self) -> str:
        """The orchestration trigger's context JSON."""
        return json.dumps({"history": self.events, "instanceId": self.instance_id, "isReplaying": False,
                           "parentInstanceId": None, "input": json.dumps(self.input),
                           "upperSchemaVersion": self.schema})  # fmt: skip


def _action(a: dict[str, Any]) -> Action:
    kind = KINDS[ActionType(a["actionType"])]
    if kind == "timer":
        return Action("timer", fire_at=datetime.strptime(a["fireAt"], ISO).replace(tzinfo=UTC))
    text = a.get("input")
    return Action(kind, a["functionName"], json.loads(text) if text is not None else None,
                  instance_id=a.get("instanceId"))  # fmt: skip


def replay(orchestrator: Callable[[str], str], history: History) -> Replay:
    """Run a registered orchestrator (its Function's user function) over ``history`` once."""
    try:
        text = orchestrator(history.to_json())
    except Exception as exc:  # the orchestration failed: the state follows the label
        message = str(exc)
        if ERROR_LABEL not in message:
            raise
        text = message.split(ERROR_LABEL, 1)[1]
    state: dict[str, Any] = json.loads(text)
    actions = [_action(a) for group in state["actions"] for a in group]
    return Replay(actions, bool(state.get("isDone")), state.get("output"), state.get("error"),
                  state.get("customStatus"), state)  # fmt: skip


def nondeterminism(history: History, result: Replay) -> str | None:
    """The host's replay check: the first recorded event the code's actions do not match (kind,
    activity or sub-orchestration name, sub-orchestration instance id), or None."""
    recorded = history.recorded()
    for i, event in enumerate(recorded):
        kind = SCHEDULED[E(event["EventType"])]
        if i >= len(result.actions):
            if result.done or result.error:
                return f"event {i}: {kind} {event.get('Name') or ''} was recorded; the code ended before it"
            return None
        got = result.actions[i]
        want = (kind, event.get("Name"), event.get("InstanceId"))
        if (got.kind, got.name, got.instance_id) != want:
            return f"event {i}: the history has {want}, the code asked for {(got.kind, got.name, got.instance_id)}"
    return None


def drive(
    orchestrator: Callable[[str], str],
    history: History,
    results: Mapping[str, Callable[[Any], Any]],
    activity_seconds: float = 1.0,
    max_episodes: int = 2_000,
) -> Replay:
    """Play the host until the orchestration ends: each replay's new actions are recorded and
    completed, one episode each, with ``results[name](input)`` (an activity or sub-orchestration;
    an exception from it becomes TaskFailed); timers fire at their time. Raises NonDeterminismError if
    a replay asks for something else than the history holds."""
    for _ in range(max_episodes):
        result = replay(orchestrator, history)
        problem = nondeterminism(history, result)
        if problem:
            raise NonDeterminismError(problem)
        new = result.actions[len(history.recorded()) :]
        if result.done or result.error:
            return result
        if not new:
            raise AssertionError("the orchestrator waits on nothing the host knows of")
        ids = []
        for a in new:
            if a.kind == "activity":
                ids.append(history.scheduled(str(a.name), a.input))
            elif a.kind == "timer":
                assert a.fire_at is not None
                ids.append(history.timer_created(a.fire_at))
            else:
                ids.append(history.sub_created(str(a.name), a.instance_id, a.input))
        for a, task in zip(new, ids, strict=True):
            if a.kind == "timer":
                assert a.fire_at is not None
                history.episode(a.fire_at)
                history.timer_fired(task, a.fire_at)
                continue
            history.episode(history.now + timedelta(seconds=activity_seconds))
            try:
                value = results[str(a.name)](a.input)
            except Exception as exc:
                history.failed(task, f"{type(exc).__name__}: {exc}")
                continue
            if a.kind == "activity":
                history.completed(task, value)
            else:
                history.sub_completed(task, value)
    raise AssertionError(f"no end after {max_episodes} episodes")
