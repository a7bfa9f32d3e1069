"""The champion lookup the promotion gate reads and the registry source read only "does not
exist" as "no such alias": any other MLflow error (a locked database, a refused login) is raised,
never taken for "no champion, promote"."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    PERMISSION_DENIED,
    RESOURCE_DOES_NOT_EXIST,
)

from recommndr.registry import tracking
from recommndr.registry.tracking import RANKER_MODEL, alias_version, is_not_found

pytestmark = pytest.mark.unit

# what MLflow 3.17's SQL store raises (mlflow/store/model_registry/sqlalchemy_store.py)
ALIAS_MISSING = MlflowException("Registered model alias champion not found.", INVALID_PARAMETER_VALUE)
MODEL_MISSING = MlflowException(
    f"Registered Model with name={RANKER_MODEL} not found", RESOURCE_DOES_NOT_EXIST
)
LOCKED = MlflowException("(sqlite3.OperationalError) database is locked", INTERNAL_ERROR)
DENIED = MlflowException(
    "PERMISSION_DENIED: the alias champion was not found in your grants", PERMISSION_DENIED
)
BAD_ALIAS = MlflowException("Invalid alias name: 'v1' is reserved; not found", INVALID_PARAMETER_VALUE)


@dataclass
class Registry:
    """A model registry that answers the alias lookup with ``error`` and records alias moves."""

    error: Exception | None
    moves: list[tuple[str, str, str]] = field(default_factory=list)

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        if self.error is not None:
            raise self.error
        raise AssertionError("the tests here never find a champion")

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.moves.append((name, alias, version))


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    import mlflow

    reg = Registry(None)
    monkeypatch.setattr(mlflow, "MlflowClient", lambda tracking_uri: reg)
    return reg


@pytest.mark.parametrize("exc", [ALIAS_MISSING, MODEL_MISSING], ids=["alias", "model"])
def test_a_missing_champion_is_no_champion(exc: MlflowException, fake_registry: Registry) -> None:
    assert is_not_found(exc)
    fake_registry.error = exc
    assert tracking.champion_metric("sqlite:///unused.db", "two_stage.ndcg@10") == (False, None)


@pytest.mark.parametrize(
    "exc",
    [LOCKED, DENIED, BAD_ALIAS, OSError("tracking store not found")],
    ids=["locked", "denied", "bad", "os"],
)
def test_other_registry_errors_are_raised_never_read_as_no_champion(
    exc: Exception, fake_registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert not is_not_found(exc)
    fake_registry.error = exc
    with pytest.raises(type(exc)) as got:
        tracking.champion_metric("sqlite:///unused.db", "two_stage.ndcg@10")
    assert got.value is exc
    # and through the whole registration: the champion alias is never moved
    from recommndr.lifecycle import train as lifecycle
    from recommndr.params import TrainConfig

    run = tracking.RegisteredRun("r1", {RANKER_MODEL: "2"}, {"two_stage.ndcg_at_10": 0.9}, "sqlite:///u.db")
    monkeypatch.setattr(tracking, "log_and_register", lambda *a, **k: run)
    with pytest.raises(type(exc)):
        lifecycle.register(tmp_path, TrainConfig(), {}, None)
    assert fake_registry.moves == []


def test_registry_source_uses_the_same_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import mlflow

    from recommndr.serving.sources import RegistrySource

    reg = Registry(ALIAS_MISSING)
    monkeypatch.setattr(mlflow, "MlflowClient", lambda tracking_uri: reg)
    source = RegistrySource("sqlite:///unused.db", RANKER_MODEL, tmp_path)
    assert source.challenger() is None  # no challenger alias
    reg.error = MODEL_MISSING
    assert source.challenger() is None
    for exc in (LOCKED, DENIED):
        reg.error = exc
        with pytest.raises(MlflowException) as got:
            source.challenger()  # an unreachable registry is not "no challenger"
        assert got.value is exc
    assert alias_version(Registry(MODEL_MISSING), RANKER_MODEL, "champion") is None
