"""One typed settings object for paths and backends, read through a cached :func:`get_settings`.

Every value can be set with an environment variable prefixed ``RECOMMNDR_`` (for example
``RECOMMNDR_DATA_DIR``) or in a ``.env`` file. Nothing is created or opened at import time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Paths and backends used by the CLI, the pipelines and the API."""

    model_config = SettingsConfigDict(env_prefix="RECOMMNDR_", env_file=".env", extra="forbid", frozen=True)

    data_dir: Path = Field(
        Path("data"), description="Default parent folder of generated and imported datasets."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    artifacts_dir: Path = Field(Path("artifacts/demo"), description="Trained artifacts the API serves.")
    event_log_dir: Path = Field(
        Path("data/events"), description="Where POST /events appends (local backend)."
    )
    event_flush_ms: float = Field(5.0, ge=0, description="Group-commit window of the event log.")
    blob_connection_string: str | None = Field(
        None, description="Azure Blob Storage (or Azurite) for artifacts; on Azure, Key Vault fills it."
    )
    blob_container: str = Field("models", description="Blob container holding published bundles.")
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
    admin_jwt_secret: str | None = Field(
        None, description="HS256 key of admin tokens; admin endpoints are off without it."
    )
    admin_jwt_issuer: str = "recommndr"
    admin_jwt_audience: str = "recommndr-admin"
    admin_allowed_networks: list[str] = Field(
        ["127.0.0.1/32", "::1/128"], description="Admin client IPs (CIDR)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing the env."""
    return Settings()
