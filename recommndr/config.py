"""One typed settings object for paths and backends, read through a cached :func:`get_settings`.

Every value can be set with an environment variable prefixed ``RECOMMNDR_`` (for example
``RECOMMNDR_DATA_DIR``) or in a ``.env`` file. Nothing is created or opened at import time.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from recommndr.errors import UserInputError


class ConfigError(UserInputError):
    """A setting (environment variable or ``.env``) has a value that cannot be used."""

    code = "invalid_settings"


class Settings(BaseSettings):
    """Paths and backends used by the CLI, the pipelines and the API."""

    model_config = SettingsConfigDict(env_prefix="RECOMMNDR_", env_file=".env", extra="forbid", frozen=True)

    data_dir: Path = Field(
        Path("data"), description="Default parent folder of generated and imported datasets."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    artifacts_dir: Path = Field(Path("artifacts/demo"), description="Trained artifacts the API serves.")
    event_log_dir: Path = Field(
        Path("data/events"),
        description="Where POST /events appends (local backend). On Azure Functions this is the "
        "instance's local disk: not durable across instances (scale-in, restarts on another host).",
    )
    event_flush_ms: float = Field(5.0, ge=0, description="Group-commit window of the event log.")
    # the streaming path (recommndr/streaming/producer.py): the same code talks to a local Tansu
    # broker and to the Event Hubs Kafka endpoint, chosen by these settings alone
    event_broker: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port[,host:port]) that POST /events produces to; "
        "on Azure the Event Hubs namespace's <name>.servicebus.windows.net:9093. Unset: the events "
        "go to the local log (event_log_dir) only.",
    )
    event_topic: str = Field(
        "recommndr-events",
        min_length=1,
        max_length=249,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The topic (on Event Hubs: the event hub) that accepted events are produced to.",
    )
    event_broker_security: Literal["plaintext", "sasl_ssl"] = Field(
        "plaintext",
        description="plaintext (a local broker) or sasl_ssl (Event Hubs: SASL_SSL with PLAIN, the "
        "username $ConnectionString and the namespace's connection string as the password).",
    )
    event_broker_username: str = Field(
        "$ConnectionString",
        description="SASL PLAIN username (sasl_ssl); Event Hubs takes the literal $ConnectionString.",
    )
    event_broker_password: SecretStr | None = Field(
        None,
        description="SASL PLAIN password (sasl_ssl); for Event Hubs the namespace connection string "
        "(Key Vault fills it on Azure). A secret: never logged, never in /ready or /health.",
    )
    event_broker_timeout_ms: float = Field(
        1000.0,
        gt=0,
        le=60_000,
        description="How long a POST /events waits for the broker's acks (acks=all) before its "
        "unconfirmed events go to the durable spool instead (the 202 then follows the spool's fsync).",
    )
    event_broker_cooldown_s: float = Field(
        5.0,
        ge=0,
        le=600,
        description="After a broker failure, how long requests go straight to the spool (the circuit "
        "breaker) before one tries the broker again; the spool's drainer closes it sooner when it ships.",
    )
    event_spool_dir: Path | None = Field(
        None,
        description="The durable spool (an event log with group commit and fsync) that takes the "
        "events the broker did not confirm in time, drained to the broker when it is back; default "
        "<event_log_dir>/spool.",
    )
    blob_connection_string: str | None = Field(
        None, description="Azure Blob Storage (or Azurite) for artifacts; on Azure, Key Vault fills it."
    )
    blob_container: str = Field("models", description="Blob container holding published bundles.")
    applicationinsights_connection_string: str | None = Field(
        None,
        validation_alias=AliasChoices("APPLICATIONINSIGHTS_CONNECTION_STRING"),
        description="Application Insights (Azure's own variable name, no prefix): when set, the API "
        "exports traces, logs and its metrics to Azure Monitor (serving/telemetry.py).",
    )
    bundle_signing_key: str | None = Field(
        None,
        description="HMAC-SHA256 key (at least 32 bytes) that signs each bundle's manifest at training "
        "and is checked before a bundle is loaded or fetched; on Azure, Key Vault fills it. Unset: "
        "bundles are written unsigned and accepted unsigned.",
    )
    artifact_name: str | None = Field(None, description="Bundle to serve from the store (e.g. 'champion').")
    artifact_cache_dir: Path = Field(Path(".cache/artifacts"), description="Local copy of fetched bundles.")
    reload_interval_s: float = Field(
        30.0, ge=0, description="How often to look for a new champion bundle (0: never)."
    )
    challenger_artifacts_dir: Path | None = Field(
        None, description="A challenger bundle to serve beside the champion."
    )
    challenger_artifact_name: str | None = Field(
        None, description="A challenger bundle in the blob store (with artifact_name)."
    )
    registry_uri: str | None = Field(
        None,
        description="Follow the MLflow registry's champion/challenger aliases at this tracking URI "
        "(e.g. sqlite:///mlflow.db) instead of a folder or the blob store.",
    )
    registry_model: str = Field(
        "recommndr-ranker", description="The registered model whose aliases are followed."
    )
    traffic_file: Path = Field(
        Path("data/serving/traffic.json"),
        description="The admin's traffic split, shared by the API's worker processes and kept across restarts.",
    )
    challenger_traffic: float = Field(
        0.0, ge=0.0, le=1.0, description="Initial share of users for the challenger."
    )
    control_file: Path = Field(
        Path("data/serving/control.json"),
        description="The operator's state shared by the API's worker processes (paused, the pending "
        "promote or rollback request, the injected fault), written atomically like traffic_file.",
    )
    canary_file: Path = Field(
        Path("data/serving/canary.json"),
        description="The running canary's progress, as the workflow publishes it (PUT /models/canary).",
    )
    audit_path: Path = Field(
        Path("data/audit.jsonl"),
        description="The append-only, hash-chained audit trail of alias moves, traffic changes, "
        "promotions, rollbacks, pauses and faults (recommndr/lifecycle/audit.py).",
    )
    fault_injection: bool = Field(
        False,
        description="Allow POST /models/fault to make the challenger fail, slow down, rank at random or "
        "rank with drifted features (tests, demos and benchmarks only; never in production).",
    )
    fault_error_rate: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="Share of the challenger's /recommendations the 'errors' fault fails.",
    )
    fault_delay_s: float = Field(
        0.3, ge=0.0, le=10.0, description="Delay the 'slow' fault adds to each challenger /recommendations."
    )
    recommend_threads: int = Field(
        2, ge=0, le=64, description="Threads computing recommendations (0: on the event loop itself)."
    )
    online_store: Literal["sqlite", "redis", "off"] = Field(
        "sqlite", description="Online feature store the API reads and updates (Feast's layout)."
    )
    online_store_path: Path = Field(
        Path("data/online/features.db"), description="Feast SQLite online store file (online_store=sqlite)."
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis online store (online_store=redis).")
    online_timeout_ms: float = Field(50.0, gt=0, description="Redis socket timeout per request.")
    # the streaming job's product windows (recommndr.streaming.windows), read beside the online store
    # (same online_store kind, path and redis_url) into an in-memory snapshot (recommndr.serving.stream)
    stream_refresh_s: float = Field(
        1.0, gt=0, le=60, description="How often the API re-reads the streaming job's product windows."
    )
    stream_stale_s: float = Field(
        30.0,
        gt=0,
        description="The job is live while its last write (its heartbeat, every ~2 s) is at most this old; "
        "else /trending and popularity serve the batch lists.",
    )
    stream_snapshot_products: int = Field(
        500, ge=10, le=20_000, description="Trending products (best first) the API's snapshot holds."
    )
    stream_live_candidates: int = Field(
        20,
        ge=0,
        le=500,
        description="Products with the most events in the last hour that join each shopper's popularity "
        "candidates while the stream is live (0: none).",
    )
    stream_timeout_s: float = Field(1.0, gt=0, description="Redis socket timeout of a snapshot read.")
    admin_jwt_secret: str | None = Field(
        None, description="HS256 key of admin tokens; admin endpoints are off without it."
    )
    admin_jwt_issuer: str = "recommndr"
    admin_jwt_audience: str = "recommndr-admin"
    admin_allowed_networks: list[str] = Field(
        ["127.0.0.1/32", "::1/128"], description="Admin client IPs (CIDR)."
    )
    admin_token_max_lifetime_s: int = Field(
        3600, ge=60, le=86400, description="Longest accepted admin token lifetime (exp - iat, seconds)."
    )
    trusted_proxies: list[str] = Field(
        [],
        description="Networks (CIDR) of reverse proxies whose X-Forwarded-For is believed (its last "
        "hop is then the client). A request with no socket peer comes from the Azure Functions host, "
        "whose front end always appends the caller's address: that header is believed too.",
    )
    functions_host: bool = Field(
        default_factory=lambda: bool(os.environ.get("FUNCTIONS_WORKER_RUNTIME")),
        description="Running inside the Azure Functions host (default: FUNCTIONS_WORKER_RUNTIME is "
        "set, as the host sets it): a request without a socket peer is the host's, and the last "
        "X-Forwarded-For hop, appended by its front end, is the client.",
    )
    explore_share: float = Field(
        0.1,
        ge=0.0,
        le=0.5,
        description="Share of each /recommendations list given to new products (every 1/share-th place); "
        "a request's explore= overrides it. 0 turns exploration off.",
    )
    alert_webhook_token: str | None = Field(
        None,
        description="Bearer secret (at least 32 bytes) Alertmanager sends to POST /alerts/webhook "
        "(its http_config.authorization.credentials_file holds the same); the webhook is off without it.",
    )
    alert_inbox_path: Path = Field(
        Path("data/serving/alerts.db"),
        description="SQLite file keeping the last alerts received, shared by the API's worker processes.",
    )
    alert_inbox_size: int = Field(
        500,
        ge=1,
        le=100_000,
        description="How many received alerts the inbox keeps (older ones are dropped).",
    )
    max_event_body_bytes: int = Field(
        1 << 20, ge=1024, le=64 << 20, description="Largest POST /events body (bytes); larger is a 413."
    )
    # the loop as the Functions app starts it (a timer, the recommndr-loop queue); the CLI takes
    # the same values as options (`recommndr retrain --local --data ...`)
    loop_data_dir: Path | None = Field(
        None, description="The dataset folder a scheduled or enqueued retrain validates and trains on."
    )
    loop_api_url: str | None = Field(
        None,
        description="The API whose traffic and models the loop's canary moves; default on Azure: the "
        "Functions app itself, https://$WEBSITE_HOSTNAME. For POST /models/retrain: this API's own URL "
        "(never taken from a request).",
    )
    # POST /models/retrain: one local retrain the API starts as a subprocess (make demo's ops page)
    loop_retrain_data: Path | None = Field(
        None,
        description="The dataset POST /models/retrain's `recommndr retrain --local` trains on; unset "
        "(the default), the endpoint is off (409 retrain_off). Needs loop_api_url.",
    )
    loop_retrain_dir: Path = Field(
        Path("data/loop/retrain"), description="Where that retrain's state and bounded log are kept."
    )
    loop_retrain_step_seconds: float | None = Field(
        None, ge=0.5, le=86_400, description="Its --step-seconds (default: the --local one, 30 s)."
    )
    loop_retrain_log_bytes: int = Field(
        1 << 20, ge=4096, le=1 << 30, description="Most bytes its log keeps (two halves, rotated)."
    )
    loop_retrain_command: list[str] = Field(
        [],
        description="Tests only: the program run instead of `python -m recommndr.cli` (as a JSON list; "
        "the retrain's arguments are appended). Empty: the real command.",
    )
    loop_workdir: Path = Field(
        Path("data/loop"), description="Where the loop writes each challenger's bundle (bundles/)."
    )
    loop_rules: dict[str, float | int | bool | list[float]] = Field(
        {},
        description="The canary's rules as JSON (recommndr.lifecycle.canary.CanaryRules; unset ones keep "
        'their defaults), e.g. {"step_seconds": 600, "look_seconds": 30}.',
    )
    loop_params: Path | None = Field(None, description="A parameters file whose train section the loop uses.")
    loop_eval_users: int = Field(20_000, ge=100, description="Users the loop's evaluation scores.")

    @model_validator(mode="after")
    def _broker_credentials(self) -> Settings:
        if self.event_broker and self.event_broker_security == "sasl_ssl" and not self.event_broker_password:
            raise ValueError(
                "event_broker_security=sasl_ssl needs RECOMMNDR_EVENT_BROKER_PASSWORD (for Event Hubs: "
                "the namespace's connection string)"
            )
        return self

    @property
    def spool_dir(self) -> Path:
        """Where the events the broker did not confirm wait (``event_spool_dir``, default
        ``<event_log_dir>/spool``)."""
        return self.event_spool_dir or self.event_log_dir / "spool"

    @field_validator("admin_allowed_networks", "trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r} is not a network (CIDR such as 10.0.0.0/8 or ::1/128)") from exc
        return v

    @field_validator("admin_jwt_secret", "bundle_signing_key", "alert_webhook_token")
    @classmethod
    def _key_long_enough(cls, v: str | None, info: ValidationInfo) -> str | None:
        """HS256 (admin tokens) and HMAC-SHA256 (bundle manifests) keys, and the alert webhook's
        bearer secret: at least 32 bytes."""
        if v is not None and len(v.encode()) < 32:
            raise ValueError(
                f"{info.field_name} (RECOMMNDR_{str(info.field_name).upper()}) is {len(v.encode())} bytes: "
                "an HMAC-SHA256 key needs at least 32 (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)"
            )
        return v


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the env."""
    try:
        return Settings()
    except ValidationError as exc:  # a wrong setting is the user's to fix: name it, no traceback
        problems = "; ".join(
            (f"RECOMMNDR_{'_'.join(str(p) for p in e['loc']).upper()}: " if e["loc"] else "") + e["msg"]
            for e in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
