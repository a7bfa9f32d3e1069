"""The loop on Azure Durable Functions: every orchestrator of
:data:`recommndr.lifecycle.workflow.ORCHESTRATORS` and every activity of
:data:`recommndr.lifecycle.activities.ACTIVITIES` under its own name, and two starters with a
durable client — a timer (the app setting ``RECOMMNDR_RETRAIN_SCHEDULE``, NCRONTAB) that starts a
retrain, and the ``recommndr-loop`` queue whose JSON messages (alerts, the admin) ask for a
retrain or a rollback. No HTTP trigger: ``AsgiFunctionApp``'s catch-all route keeps every path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from recommndr.errors import UserInputError
from recommndr.lifecycle.activities import ACTIVITIES
from recommndr.lifecycle.workflow import ORCHESTRATORS, Context

log = logging.getLogger(__name__)
SCHEDULE = "%RECOMMNDR_RETRAIN_SCHEDULE%"  # an app setting, e.g. "0 0 3 * * *" (03:00 UTC daily)
QUEUE_CONNECTION = "AzureWebJobsStorage"  # the app's own storage account (the task hub's too)


def blueprint(schedule: str = SCHEDULE) -> df.Blueprint:
    """The loop's Functions: orchestrators and activities by the package's names, the starters."""
    from recommndr.lifecycle.triggers import QUEUE

    bp = df.Blueprint()
    for name, body in ORCHESTRATORS.items():
        _orchestrator(bp, name, body)
    for name, fn in ACTIVITIES.items():
        _activity(bp, name, fn)

    async def loop_schedule(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
        from recommndr.config import get_settings
        from recommndr.lifecycle.triggers import LoopRequest, start

        request = LoopRequest(action="retrain", reason="scheduled retrain", by="schedule")
        await start(client, request, get_settings(), trigger="schedule")

    async def loop_queue(msg: func.QueueMessage, client: df.DurableOrchestrationClient) -> None:
        from recommndr.config import get_settings
        from recommndr.lifecycle.triggers import parse_request, start

        try:
            request = parse_request(msg.get_body())
        except UserInputError as exc:  # retrying cannot fix it: say why and drop it
            log.error("loop message %s dropped: %s", msg.id, exc)
            return
        await start(client, request, get_settings(), trigger="queue")  # a failure here is retried

    # the decorators, applied as calls (the durable library has no type hints)
    with_client = bp.durable_client_input(client_name="client")
    timer = bp.timer_trigger(schedule=schedule, arg_name="timer", run_on_startup=False)
    bp.function_name("loop_schedule")(timer(with_client(loop_schedule)))
    queue = bp.queue_trigger(arg_name="msg", queue_name=QUEUE, connection=QUEUE_CONNECTION)
    bp.function_name("loop_queue")(queue(with_client(loop_queue)))
    return bp


def _orchestrator(bp: df.Blueprint, name: str, body: Callable[[Context], Generator[Any, Any, Any]]) -> None:
    """``name`` as an orchestrator Function: the package's generator over Azure's context."""

    def orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        return (yield from body(context))

    orchestrator.__name__ = orchestrator.__qualname__ = name
    bp.function_name(name)(bp.orchestration_trigger(context_name="context")(orchestrator))


def _activity(bp: df.Blueprint, name: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """``name`` as an activity Function: the package's function of one small JSON document."""

    def activity(payload: dict[str, Any]) -> dict[str, Any]:
        return fn(payload)

    activity.__name__ = activity.__qualname__ = name
    bp.function_name(name)(bp.activity_trigger(input_name="payload")(activity))
