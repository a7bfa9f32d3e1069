"""Artifacts through Azure Blob Storage, for real against Azurite: publish, serve from the blob
store, refuse a tampered blob, a manifest naming files outside the bundle, a forged or unsigned
manifest when a signing key is set; two workers fetching one bundle both get it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.errors import ArtifactError
from recommndr.loading import load_bundle
from recommndr.params import TrainConfig
from recommndr.registry.artifacts import MANIFEST, write_manifest
from recommndr.registry.store import BlobStore, LocalStore
from recommndr.serving.app import create_app
from recommndr.training.pipeline import train

pytestmark = pytest.mark.integration
KEY = "test-signing-key-" + "k" * 32


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


def _manifest(bundle: Path) -> dict[str, Any]:
    m: dict[str, Any] = json.loads((bundle / MANIFEST).read_text())
    return m


def _upload_manifest(store: BlobStore, name: str, manifest: dict[str, Any]) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):  # each test may be the first to use the container
        store.container.create_container()
    store.container.upload_blob(f"{name}/{MANIFEST}", json.dumps(manifest).encode(), overwrite=True)


def _record_downloads(store: BlobStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    real = store.container.download_blob

    def download_blob(blob: str, *args: Any, **kwargs: Any) -> Any:
        names.append(blob)
        return real(blob, *args, **kwargs)

    monkeypatch.setattr(store.container, "download_blob", download_blob)
    return names


@pytest.mark.parametrize("bad", ["../evil", "../../evil", "absolute"])
def test_manifest_naming_files_outside_the_bundle_is_refused(
    azurite: str, bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    store = BlobStore(azurite, "models")
    store.publish(bundle_dir, "escape")
    target = str(tmp_path / "abs-evil") if bad == "absolute" else bad
    m = _manifest(bundle_dir)
    m["files"] = {target: "0" * 64, **m["files"]}  # listed first: nothing else is fetched before it
    _upload_manifest(store, "escape", m)
    work = tmp_path / "work"
    work.mkdir()
    downloads = _record_downloads(store, monkeypatch)
    with pytest.raises(ArtifactError, match="not part of a bundle") as err:
        store.fetch("escape", work / "cache")
    assert repr(target) in str(err.value)
    assert downloads == [f"escape/{MANIFEST}"]  # refused before any file
    assert list(tmp_path.rglob("*evil*")) == [] and list(work.iterdir()) == []  # nothing written anywhere


def test_manifest_without_the_bundle_files_is_refused(azurite: str, bundle_dir: Path, tmp_path: Path) -> None:
    store = BlobStore(azurite, "models")
    _upload_manifest(store, "empty", {**_manifest(bundle_dir), "files": {}})
    with pytest.raises(ArtifactError, match="lacks bundle files"):
        store.fetch("empty", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def _signed_copy(bundle: Path, out: Path, key: str) -> Path:
    shutil.copytree(bundle, out)
    extra = {
        k: v for k, v in _manifest(bundle).items() if k not in ("format", "versions", "files", "signature")
    }
    write_manifest(out, extra, key=key)
    return out


def test_signed_bundles_through_blob(
    azurite: str, bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECOMMNDR_BUNDLE_SIGNING_KEY", KEY)
    get_settings.cache_clear()
    store = BlobStore(azurite, "models")
    signed = _signed_copy(bundle_dir, tmp_path / "signed", KEY)
    store.publish(signed, "signed")
    local = store.fetch("signed", tmp_path / "cache")
    assert load_bundle(local).manifest["signature"] == _manifest(signed)["signature"]

    # whoever can write the container replaces the ranker and puts its hash in the manifest
    evil = b"not the trained ranker"
    store.container.upload_blob("signed/ranker.onnx", evil, overwrite=True)
    forged = _manifest(signed)
    forged["files"]["ranker.onnx"] = hashlib.sha256(evil).hexdigest()
    _upload_manifest(store, "signed", forged)
    downloads = _record_downloads(store, monkeypatch)
    with pytest.raises(ArtifactError, match="signature is wrong"):
        store.fetch("signed", tmp_path / "cache2")
    assert downloads == [f"signed/{MANIFEST}"] and not (tmp_path / "cache2").exists()

    with pytest.raises(ArtifactError, match="is not signed"):
        store.publish(bundle_dir, "unsigned")  # never published unsigned while a key is set
    store.publish(signed, "unsigned")
    _upload_manifest(store, "unsigned", _manifest(bundle_dir) | {"files": _manifest(signed)["files"]})
    with pytest.raises(ArtifactError, match="is not signed"):
        store.fetch("unsigned", tmp_path / "cache3")
    assert not (tmp_path / "cache3").exists()


def test_two_workers_fetching_one_bundle(
    azurite: str, bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    BlobStore(azurite, "models").publish(bundle_dir, "race")
    last = sorted(_manifest(bundle_dir)["files"])[-1]
    both_downloading = threading.Barrier(2, timeout=60)
    workers = [BlobStore(azurite, "models") for _ in range(2)]
    for w in workers:
        real = w.container.download_blob

        def download_blob(blob: str, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if blob == f"race/{last}":
                both_downloading.wait()  # neither has renamed its copy into the cache yet
            return _real(blob, *args, **kwargs)

        monkeypatch.setattr(w.container, "download_blob", download_blob)
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(2) as pool:
        got = [f.result(timeout=120) for f in [pool.submit(w.fetch, "race", cache) for w in workers]]
    assert got[0] == got[1]
    assert load_bundle(got[0]).manifest == _manifest(bundle_dir)
    assert [p.name for p in cache.iterdir()] == ["race"]  # no temporary folder left behind
