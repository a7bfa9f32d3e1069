"""The drift check as a timer Function: every 5 minutes (``RECOMMNDR_DRIFT_SCHEDULE``, NCRONTAB),
the instance's own window against the loaded bundles' references (``recommndr.serving.drift_check``)."""

from __future__ import annotations

import logging

import azure.functions as func

from recommndr.serving.drift_check import check_served
from recommndr.serving.runtime import ServingState

log = logging.getLogger(__name__)
SCHEDULE = "%RECOMMNDR_DRIFT_SCHEDULE%"  # an app setting; infra sets it to "0 */5 * * * *"


def blueprint(state: ServingState, schedule: str = SCHEDULE) -> func.Blueprint:
    """The timer Function, bound to the API's state (the process it runs in)."""
    bp = func.Blueprint()  # type: ignore[no-untyped-call]

    @bp.function_name("drift_check")
    @bp.timer_trigger(schedule=schedule, arg_name="timer", run_on_startup=False, use_monitor=False)
    def drift_check(timer: func.TimerRequest) -> None:
        if timer.past_due:
            log.info("drift check: the timer is past due (an instance was asleep)")
        reports = check_served(state)
        if not reports:
            log.info("drift check: no loaded model has a monitoring reference")

    return bp
