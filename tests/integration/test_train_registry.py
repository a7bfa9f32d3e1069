"""``recommndr train`` and ``evaluate`` end to end on the tiny shop (with a bundle signing key
set, as on Azure), and the MLflow registry on a temporary SQLite store: versions, the challenger
alias, and promotion only on a better NDCG@10."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recommndr.config import get_settings
from recommndr.errors import ArtifactError
from recommndr.loading import load_bundle
from recommndr.monitoring.reference import FILE as REFERENCE
from recommndr.registry.artifacts import BUNDLE_FILES, MANIFEST, sha256

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXE = [sys.executable, "-m", "recommndr.cli"]
KEY = "train-registry-test-key-" + "k" * 24


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: Path) -> Path:
    out = tmp_path_factory.mktemp("art") / "artifacts"
    env = {**os.environ, "RECOMMNDR_BUNDLE_SIGNING_KEY": KEY}
    r = subprocess.run([*EXE, "train", "--data", str(tiny_dataset), "--out", str(out), "--no-track"],
                       capture_output=True, text=True, timeout=600, check=False, env=env)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_artifacts_are_complete_and_verified(trained: Path) -> None:
    bundle = load_bundle(trained)
    m = bundle.manifest
    # the one list of a bundle's files is what training writes (metrics.json sits beside it)
    assert set(m["files"]) == BUNDLE_FILES | {REFERENCE}
    assert {p.name for p in trained.iterdir()} - BUNDLE_FILES == {MANIFEST, "metrics.json", REFERENCE}
    for name in (
        "retrieval.onnx",
        "ranker.onnx",
        "ranker.txt",
        "features.npz",
        "similar.npz",
        "copurchase.npz",
    ):
        assert name in m["files"]
    assert m["ranker"]["onnx_parity"] <= 1e-5
    assert len(m["data"]["sha256"]) == 64
    assert m["versions"]["onnxruntime"] != "absent"
    (trained / "ranker.onnx").write_bytes((trained / "ranker.onnx").read_bytes() + b"x")
    with pytest.raises(ArtifactError, match="does not match its hash"):
        load_bundle(trained)
    (trained / "ranker.onnx").write_bytes((trained / "ranker.onnx").read_bytes()[:-1])
    assert load_bundle(trained).manifest == m


def test_evaluate_json(trained: Path, tiny_dataset: Path) -> None:
    r = subprocess.run([*EXE, "evaluate", "--data", str(tiny_dataset), "--artifacts", str(trained), "--json"],
                       capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for model in ("popularity", "als", "two_stage"):
        for key in ("ndcg@10", "recall@50", "map@10", "hit_rate@10", "coverage@10"):
            assert 0.0 <= res[model][key] <= 1.0
        assert "cold_users" in res[model] and "cold_items" in res[model]
    assert res["two_stage"]["ndcg@10"] > res["popularity"]["ndcg@10"]


def test_registry_versions_and_aliases(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from recommndr.lifecycle.train import register
    from recommndr.params import TrainConfig
    from recommndr.registry.tracking import RANKER_MODEL, RETRIEVAL_MODEL

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = TrainConfig()

    def metrics(ndcg: float) -> dict[str, object]:
        return {"two_stage": {"ndcg@10": ndcg}, "als": {"ndcg@10": 0.1}}

    first = register(trained, cfg, {"total": 1.0}, metrics(0.20), uri)
    assert first.champion and first.reason == "no champion yet"
    worse = register(trained, cfg, {"total": 1.0}, metrics(0.15), uri)
    assert not worse.champion
    better = register(trained, cfg, {"total": 1.0}, metrics(0.25), uri)
    assert better.champion
    client = MlflowClient(tracking_uri=uri)
    for name in (RETRIEVAL_MODEL, RANKER_MODEL):
        assert (
            str(client.get_model_version_by_alias(name, "champion").version) == better.versions[name] == "3"
        )
        assert str(client.get_model_version_by_alias(name, "challenger").version) == "3"
    run = client.get_run(worse.run_id)
    assert run.data.metrics["two_stage.ndcg_at_10"] == pytest.approx(0.15)
    assert any(a.path == "plots" for a in client.list_artifacts(worse.run_id))


def test_training_signs_with_the_configured_key(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert json.loads((trained / MANIFEST).read_text())["signature"]["alg"] == "HMAC-SHA256"
    monkeypatch.setenv("RECOMMNDR_BUNDLE_SIGNING_KEY", KEY)
    get_settings.cache_clear()
    load_bundle(trained)
    forged = tmp_path / "forged"
    shutil.copytree(trained, forged)
    with (forged / "ranker.onnx").open("ab") as f:
        f.write(b"x")
    m = json.loads((forged / MANIFEST).read_text())
    m["files"]["ranker.onnx"] = sha256(forged / "ranker.onnx")
    (forged / MANIFEST).write_text(json.dumps(m, indent=2))
    with pytest.raises(ArtifactError, match="signature is wrong"):
        load_bundle(forged)
    monkeypatch.setenv("RECOMMNDR_BUNDLE_SIGNING_KEY", "another key of at least thirty-two bytes")
    get_settings.cache_clear()
    with pytest.raises(ArtifactError, match="signature is wrong"):
        load_bundle(trained)
