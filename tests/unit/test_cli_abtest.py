"""``recommndr abtest`` as a user runs it: the contract's JSON, the MLflow run, the replay on data
without ground truth, and the refusals (exit 2 and a message, no traceback)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.unit.test_cli import run

pytestmark = pytest.mark.unit


def test_abtest_json_mlflow_replay_and_refusals(
    tiny_dataset: Path, artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # this test's own tracking store (an in-process mlflow.set_tracking_uri elsewhere sets the variable)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    r = run("abtest", "--data", str(tiny_dataset), "--a", str(artifacts), "--b", "popularity",
            "--users", "2000", "--resamples", "200", "--json", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    for arm in ("a", "b"):
        assert {"ctr", "atc", "cvr"} <= set(res[arm])
    for rate in ("ctr", "atc", "cvr"):
        assert set(res["diff"][rate]) == {"estimate", "ci_low", "ci_high", "p_value"}
    assert res["a"]["ctr"] > res["b"]["ctr"] and res["_meta"]["kind"] == "simulation"
    # logged to MLflow (SQLite in the working directory): the run's metrics and its plot
    db = sqlite3.connect(tmp_path / "mlflow.db")
    run_id = res["_meta"]["mlflow_run"]
    keys = {k for (k,) in db.execute("select key from metrics where run_uuid = ?", (run_id,))}
    assert {"a.ctr", "b.ctr", "diff.ctr.ci_low", "diff.cvr.p_value"} <= keys
    assert list(tmp_path.glob(f"mlruns/**/{run_id}/artifacts/plots/intervals.png"))

    # no ground truth: a replay, labelled so, and no CTR
    bare = tmp_path / "bare"
    shutil.copytree(tiny_dataset, bare, ignore=shutil.ignore_patterns("ground_truth"))
    r = run("abtest", "--data", str(bare), "--a", str(artifacts), "--b", "popularity", "--users", "300",
            "--resamples", "200", "--no-track", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "REPLAY, not a CTR" in r.stdout and "hit_rate@10" in r.stdout and "ctr" not in r.stdout

    for args, message in (
        (["--users", "5"], "--users"),
        (["--b", str(tmp_path / "nothing")], "neither an artifacts folder"),
        (["--a", str(tmp_path / "nothing")], "is not a folder"),
        (["--resamples", "3"], "--resamples"),
    ):
        base = {"--data": str(tiny_dataset), "--a": str(artifacts), "--b": "popularity"}
        argv = [x for k, v in base.items() if k not in args for x in (k, v)] + args
        r = run("abtest", *argv, "--no-track", cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        flat = re.sub(r"[\s│]+", " ", r.stderr)  # rich wraps the message in a box
        assert message in flat and "Traceback" not in r.stderr, r.stderr
