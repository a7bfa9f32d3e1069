"""What starts the loop on Azure: the Functions app's timer and its ``recommndr-loop`` queue
(``orchestrations/``) build the orchestration's input from :class:`~recommndr.config.Settings`
and start it through a durable client — the logic is here, the Functions are wiring.

One retrain at a time: a second canary beside a running one would move the same traffic split
and the same aliases, so a retrain asked while one runs is skipped (and says which one runs). A
rollback asked while a retrain runs goes to that canary as the operator's request (``POST
/models/rollback``: the API sends every user to the champion at once and records the request; the
workflow's next look rolls back its own way, aliases and audit included); with no retrain running
it starts the ``rollback`` orchestration, at once (``acute``), as ``recommndr rollback`` does.

The queue message is JSON, at most 64 KiB (Azure Storage's own limit)::

    {"action": "retrain" | "rollback", "reason": "...", "by": "...", "restore_champion": false}
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recommndr.config import ConfigError, Settings
from recommndr.errors import UserInputError
from recommndr.lifecycle.workflow import RETRAIN, ROLLBACK

log = logging.getLogger(__name__)
QUEUE = "recommndr-loop"
MAX_MESSAGE_BYTES = 64 * 1024
# an instance in any of these states still owns the canary (Suspended: paused by an operator
# through the durable client; it resumes where it was)
ACTIVE = ("Running", "Pending", "Suspended", "ContinuedAsNew")


class LoopRequest(BaseModel):
    """One message of the ``recommndr-loop`` queue (alerts and the admin enqueue them)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    action: Literal["retrain", "rollback"]
    reason: str = Field("requested", min_length=1, max_length=500)
    by: str = Field("queue", min_length=1, max_length=100, description="who asked (kept in the audit trail)")
    restore_champion: bool = Field(
        False, description="rollback: also move champion back to previous_champion (undo a promotion)"
    )


def parse_request(body: bytes | str) -> LoopRequest:
    """The queue message as a request; UserInputError naming what is wrong."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_MESSAGE_BYTES:
        raise UserInputError(f"the loop message is {len(raw)} bytes; at most {MAX_MESSAGE_BYTES}")
    try:
        return LoopRequest.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        detail = str(exc).replace("\n", " ")[:500]
        raise UserInputError(
            'the loop message must be JSON {"action": "retrain"|"rollback", "reason", "by"}: ' + detail
        ) from exc


def loop_input(
    settings: Settings,
    trigger: str,
    by: str,
    need_data: bool = True,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    """The orchestration's input (:class:`~recommndr.lifecycle.activities.LoopInput`, as JSON)
    from the settings; ConfigError naming the setting that is missing or wrong. A rollback needs
    no dataset (``need_data=False``)."""
    from recommndr.lifecycle.activities import LoopInput
    from recommndr.lifecycle.canary import CanaryRules
    from recommndr.registry.tracking import tracking_uri

    if need_data and settings.loop_data_dir is None:
        raise ConfigError("RECOMMNDR_LOOP_DATA_DIR is not set: the loop has no dataset to retrain on")
    api = settings.loop_api_url
    if api is None and environ.get("WEBSITE_HOSTNAME"):  # Azure sets it to the app's own host name
        api = f"https://{environ['WEBSITE_HOSTNAME']}"
    if api is None:
        raise ConfigError("RECOMMNDR_LOOP_API_URL is not set (nor WEBSITE_HOSTNAME): no API to canary on")
    try:
        rules = CanaryRules.model_validate(settings.loop_rules)
    except ValidationError as exc:
        raise ConfigError(f"RECOMMNDR_LOOP_RULES: {str(exc).replace(chr(10), ' ')}") from exc
    data = str(Path(settings.loop_data_dir).resolve()) if settings.loop_data_dir else ""
    cfg = LoopInput(
        data=data, out_root=str((settings.loop_workdir / "bundles").resolve()), api=api,
        tracking_uri=settings.registry_uri or tracking_uri(), audit_path=str(settings.audit_path.resolve()),
        rules=rules, params=str(settings.loop_params) if settings.loop_params else None,
        eval_users=settings.loop_eval_users, trigger=trigger, by=by,
    )  # fmt: skip
    return cfg.model_dump(mode="json")


def new_instance_id(name: str, now: datetime | None = None) -> str:
    """``retrain-20261202T031500Z-1f2e3d4c``: the name first (the starters find running ones by
    that prefix), then when, then 32 random bits so two starts in a second differ."""
    at = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{at}-{secrets.token_hex(4)}"


class DurableClient(Protocol):
    """The two calls of azure.durable_functions.DurableOrchestrationClient used here."""

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None = None, client_input: Any = None
    ) -> str: ...

    async def get_status_by(
        self, runtime_status: Sequence[Any] | None = None, instance_id_prefix: str | None = None
    ) -> list[Any]: ...


async def running(client: DurableClient, name: str) -> list[str]:
    """Instances of orchestration ``name`` that are still active, oldest id first."""
    from azure.durable_functions import OrchestrationRuntimeStatus

    found = await client.get_status_by(
        runtime_status=[OrchestrationRuntimeStatus(s) for s in ACTIVE], instance_id_prefix=f"{name}-"
    )
    # the prefix also matches the sub-orchestrations (retrain-...-rollback): keep the name's own
    return sorted(str(s.instance_id) for s in found if s.name == name)


async def start(
    client: DurableClient, request: LoopRequest, settings: Settings, trigger: str
) -> dict[str, Any]:
    """Carry out ``request``: ``{"action", "started": instance id | None, "running": id | None,
    "reason"}``."""
    busy = await running(client, RETRAIN)
    if request.action == "retrain":
        if busy:
            log.warning("retrain (%s, by %s) not started: %s is still running", trigger, request.by, busy[0])
            return {"action": "retrain", "started": None, "running": busy[0],
                    "reason": f"a retrain is still running ({busy[0]})"}  # fmt: skip
        cfg = loop_input(settings, trigger, request.by)
        iid = await client.start_new(RETRAIN, instance_id=new_instance_id(RETRAIN), client_input=cfg)
        log.info("retrain %s started (%s, by %s): %s", iid, trigger, request.by, request.reason)
        return {"action": "retrain", "started": iid, "running": None, "reason": request.reason}
    cfg = loop_input(settings, trigger, request.by, need_data=False)
    if busy:
        from recommndr.lifecycle.activities import _call  # the activities' admin call (token, errors)

        _call(cfg, "POST", "/models/rollback", json={"reason": f"{request.reason} (by {request.by})"[:500]})
        log.warning(
            "rollback asked of the running canary %s (by %s): %s", busy[0], request.by, request.reason
        )
        return {"action": "rollback", "started": None, "running": busy[0],
                "reason": f"asked the running canary {busy[0]} to roll back"}  # fmt: skip
    iid = new_instance_id(ROLLBACK)
    rb = {**cfg, "reason": request.reason, "rule": "manual", "acute": True, "share": 0.0,
          "restore_champion": request.restore_champion, "instance_id": iid}  # fmt: skip
    iid = await client.start_new(ROLLBACK, instance_id=iid, client_input=rb)
    log.warning("rollback %s started (by %s): %s", iid, request.by, request.reason)
    return {"action": "rollback", "started": iid, "running": None, "reason": request.reason}
