"""Artifacts through Azure Blob Storage, for real against Azurite: publish, serve from the blob
store, refuse a tampered blob."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.registry.artifacts import ArtifactError
from recommndr.registry.store import BlobStore, LocalStore
from recommndr.serving.app import create_app
from recommndr.training.config import TrainConfig
from recommndr.training.pipeline import train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundle_dir(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("blob") / "art"
    train(tiny_dataset, out, TrainConfig.model_validate({"ranker": {"n_estimators": 30}}))
    return out


def test_publish_fetch_and_serve_from_blob(
    azurite: str, bundle_dir: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BlobStore(azurite, "models")
    store.publish(bundle_dir, "champion")
    other = tmp_path / "other"
    train(tiny_dataset, other, TrainConfig.model_validate({"ranker": {"n_estimators": 10}}))
    store.publish(other, "challenger")
    local = store.fetch("champion", tmp_path / "cache")
    assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in bundle_dir.iterdir())
    assert store.fetch("champion", tmp_path / "cache") == local  # cached by content

    monkeypatch.setenv("RECOMMNDR_BLOB_CONNECTION_STRING", azurite)
    monkeypatch.setenv("RECOMMNDR_ARTIFACT_NAME", "champion")
    monkeypatch.setenv("RECOMMNDR_CHALLENGER_ARTIFACT_NAME", "challenger")
    monkeypatch.setenv("RECOMMNDR_CHALLENGER_TRAFFIC", "1.0")
    monkeypatch.setenv("RECOMMNDR_ARTIFACT_CACHE_DIR", str(tmp_path / "serve-cache"))
    get_settings.cache_clear()
    with TestClient(create_app(None, tmp_path / "events")) as client:
        assert client.get("/ready").status_code == 200
        models = client.get("/models").json()
        assert [m["variant"] for m in models["models"]] == ["champion", "challenger"]
        assert models["models"][0]["version"] != models["models"][1]["version"]
        r = client.get("/recommendations/5?k=4").json()
        assert len(r["items"]) == 4 and r["variant"] == "challenger"  # all traffic to the challenger


def test_tampered_or_missing_bundle_is_refused(azurite: str, bundle_dir: Path, tmp_path: Path) -> None:
    store = BlobStore(azurite, "models")
    store.publish(bundle_dir, "tampered")
    store.container.upload_blob("tampered/ranker.onnx", b"not a model", overwrite=True)
    with pytest.raises(ArtifactError, match="does not match its hash"):
        store.fetch("tampered", tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("ranker.onnx"))  # nothing half-written is left
    with pytest.raises(ArtifactError, match="no bundle 'nope'"):
        store.fetch("nope", tmp_path / "cache")


def test_local_store_round_trip(bundle_dir: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.publish(bundle_dir, "champion")
    assert (store.fetch("champion", tmp_path) / "manifest.json").exists()
    with pytest.raises(ArtifactError):
        store.fetch("other", tmp_path)
