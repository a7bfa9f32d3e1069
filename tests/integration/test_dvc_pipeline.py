"""The DVC pipeline for real: repro offline, a no-op second repro, a changed parameter re-running
only what depends on it, and a push / pull round trip through a local remote."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def sh(*args: str, cwd: Path) -> str:
    env = dict(
        os.environ, PATH=f"{BIN}:{os.environ['PATH']}", DVC_NO_ANALYTICS="1", GX_ANALYTICS_ENABLED="false"
    )
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["scale"] = "tiny"
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(ROOT / "recommndr", repo / "recommndr", ignore=shutil.ignore_patterns("__pycache__"))
    sh("git", "init", "-q", cwd=repo)
    sh("git", "config", "user.email", "ci@example.invalid", cwd=repo)
    sh("git", "config", "user.name", "ci", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    sh("dvc", "config", "core.analytics", "false", cwd=repo)
    return repo


def test_repro_noop_param_change_and_remote_roundtrip(repo: Path, tmp_path: Path) -> None:
    out = sh("dvc", "repro", cwd=repo)
    for stage in ("generate", "validate", "profile", "split"):
        assert f"Running stage '{stage}'" in out
    assert (repo / "data/synthetic/events.parquet").exists()
    assert (repo / "reports/validation.json").exists()

    again = sh("dvc", "repro", cwd=repo)
    assert "Running stage" not in again
    assert "up to date" in again

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"]["test_days"] = 10
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    changed = sh("dvc", "repro", cwd=repo)
    assert "Running stage 'split'" in changed
    assert "Running stage 'generate'" not in changed

    params["data"]["seed"] = 43
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    reseeded = sh("dvc", "repro", cwd=repo)
    assert "Running stage 'generate'" in reseeded and "Running stage 'validate'" in reseeded

    before = _tree_digest(repo / "data/synthetic")
    sh("dvc", "remote", "add", "-d", "local", str(tmp_path / "remote"), cwd=repo)
    sh("dvc", "push", cwd=repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    sh("dvc", "pull", cwd=repo)
    assert _tree_digest(repo / "data/synthetic") == before
