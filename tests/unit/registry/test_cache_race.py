"""Two API workers fetching the same bundle at once: the one that renames second finds the
bundle already in place, and that is success (it used to be an error, and a 503 until the next
reload). A cache folder holding something else is refused by name."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from recommndr.registry.artifacts import MANIFEST, ArtifactError, read_manifest
from recommndr.registry.store import install_bundle
from tests.artifact_store_contract import make_bundle

pytestmark = pytest.mark.unit


def _both(work: Callable[[], Path]) -> list[Path]:
    with ThreadPoolExecutor(2) as pool:
        return [f.result(timeout=60) for f in [pool.submit(work), pool.submit(work)]]


def test_install_onto_the_same_bundle_is_success(bundle: Path, tmp_path: Path) -> None:
    dest = tmp_path / "cache" / "b"
    shutil.copytree(bundle, dest)  # the other worker's copy, renamed into place first
    mine = tmp_path / "mine"
    shutil.copytree(bundle, mine)
    install_bundle(mine, dest)
    assert read_manifest(dest)["files"] == read_manifest(bundle)["files"]


def test_install_onto_something_else_is_refused(bundle: Path, tmp_path: Path) -> None:
    dest = make_bundle(tmp_path / "cache" / "b", seed="other")
    with pytest.raises(ArtifactError, match=f"{re.escape(str(dest))}.*holds something else"):
        install_bundle(bundle, dest)
    (dest / "ranker.onnx").unlink()  # the same manifest, a file missing: not the bundle either
    shutil.copy2(bundle / MANIFEST, dest / MANIFEST)
    with pytest.raises(ArtifactError, match="holds something else"):
        install_bundle(bundle, dest)


class Registry:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        return type("Version", (), {"run_id": self.run_id})()


def test_two_workers_fetching_one_registry_bundle(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.artifacts

    from recommndr.serving.sources import RegistrySource

    both_downloaded = threading.Barrier(2, timeout=30)

    def download_artifacts(run_id: str, artifact_path: str, dst_path: str, tracking_uri: str) -> str:
        got = shutil.copytree(bundle, Path(dst_path) / artifact_path)
        both_downloaded.wait()  # neither worker renames before both have downloaded
        return str(got)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download_artifacts)
    monkeypatch.setattr(mlflow, "MlflowClient", lambda tracking_uri: Registry("run1"))
    cache = tmp_path / "cache"
    workers = [RegistrySource("sqlite:///unused.db", "m", cache) for _ in range(2)]
    turn = iter(workers)
    lock = threading.Lock()

    def fetch() -> Path:
        with lock:
            source = next(turn)
        return source.champion()

    a, b = _both(fetch)
    assert a == b == cache / "mlflow-run1"
    assert read_manifest(a)["files"] == read_manifest(bundle)["files"]
    assert [p.name for p in cache.iterdir()] == ["mlflow-run1"]  # no temporary folder left


def test_a_registry_bundle_that_does_not_verify_is_not_cached(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.artifacts

    from recommndr.serving.sources import RegistrySource

    m = json.loads((bundle / MANIFEST).read_text())
    m["files"]["../../escaped"] = "0" * 64
    (bundle / MANIFEST).write_text(json.dumps(m))

    def download_artifacts(run_id: str, artifact_path: str, dst_path: str, tracking_uri: str) -> str:
        return str(shutil.copytree(bundle, Path(dst_path) / artifact_path))

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download_artifacts)
    monkeypatch.setattr(mlflow, "MlflowClient", lambda tracking_uri: Registry("run2"))
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match=r"run run2 is refused.*not part of a bundle"):
        RegistrySource("sqlite:///unused.db", "m", cache).champion()
    assert list(cache.iterdir()) == []
