"""``recommndr monitor drift`` as a user runs it: a replay of events files, a planted shift found,
clear refusals, exit code 0 whether or not it drifted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from recommndr.config import get_settings
from recommndr.errors import UserInputError
from recommndr.monitoring.watch import admin_token, fetch_window
from tests.ports import free_port
from tests.unit.test_cli import run

pytestmark = pytest.mark.unit


def said(r: object) -> str:
    """What the command printed, with rich's box and line breaks taken out."""
    text = r.stdout + r.stderr  # type: ignore[attr-defined]
    return " ".join(text.replace("│", " ").split())


@pytest.fixture(scope="module")
def events_file(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recommndr.data.schema import read_table

    df = pl.from_arrow(read_table(tiny_dataset, "events"))
    assert isinstance(df, pl.DataFrame)
    out = tmp_path_factory.mktemp("drift") / "events.parquet"
    df.write_parquet(out)
    return out


def test_a_replay_of_the_training_events_does_not_drift(
    artifacts: Path, events_file: Path, tmp_path: Path
) -> None:
    # the reference's shoppers are those of the last 14 days (train's holdout_days)
    r = run("monitor", "drift", "--artifacts", str(artifacts), "--events", str(events_file), "--window", "14d",
            "--json", "--no-log", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert set(report) >= {"drift", "features", "score", "confidence", "validation_failure_rate"}
    assert report["features"]["price"]["n"] > 500
    assert not report["drift"], report["kinds"]
    assert not report["kinds"]["validation"] and report["validation_failure_rate"] == 0.0


def test_doubled_prices_and_broken_rows_are_reported(
    artifacts: Path, events_file: Path, tmp_path: Path
) -> None:
    df = pl.read_parquet(events_file)
    last = df["ts"].max()
    recent = df.filter(pl.col("ts") >= last - pl.duration(days=14))  # type: ignore[operator]
    shifted = recent.with_columns(pl.col("price") * 2)
    bad = shifted.head(200).with_columns(pl.lit(-5.0).alias("price"))
    path = tmp_path / "shifted.parquet"
    pl.concat([shifted, bad]).write_parquet(path)
    r = run("monitor", "drift", "--artifacts", str(artifacts), "--events", str(path), "--window", "14d", "--json",
            cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr  # it reports, it does not fail
    report = json.loads(r.stdout)
    assert report["drift"] and report["features"]["price"]["drift"] and report["kinds"]["validation"]
    assert report["validation"]["failures"] == 200
    assert report.get("mlflow_run_id")  # an alerting run is logged (MLflow on SQLite in the cwd)
    text = run("monitor", "drift", "--artifacts", str(artifacts), "--events", str(path), "--window", "14d",
               "--no-log", cwd=tmp_path)  # fmt: skip
    assert text.returncode == 0 and "drift: YES" in text.stdout and "SPIKE" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "1h"], "either --events or --api"),
        (["--events", "X", "--window", "soon"], "is not a duration"),
        (["--events", "X", "--window", "-3h"], "is not a duration"),
        (["--events", "/nonexistent/events.parquet"], "does not exist"),
        (["--events", "X", "--variant", "third"], "champion or challenger"),
    ],
)
def test_bad_input_is_refused_by_name(
    artifacts: Path, events_file: Path, args: list[str], message: str
) -> None:
    args = [str(events_file) if a == "X" else a for a in args]
    r = run("monitor", "drift", "--artifacts", str(artifacts), *args)
    assert r.returncode != 0 and message in said(r)
    assert "Traceback" not in r.stderr


def test_a_bundle_without_a_reference_is_refused(artifacts: Path, events_file: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(artifacts, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]["monitoring.npz"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "monitoring.npz").unlink()
    r = run("monitor", "drift", "--artifacts", str(old), "--events", str(events_file))
    assert r.returncode != 0 and "no monitoring reference" in said(r)


def test_an_unreachable_api_and_missing_admin_access_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserInputError, match="could not be reached"):
        fetch_window(f"http://127.0.0.1:{free_port()}", "champion", 60, "token", timeout_s=2)
    monkeypatch.delenv("RECOMMNDR_ADMIN_JWT_SECRET", raising=False)
    monkeypatch.delenv("RECOMMNDR_ADMIN_TOKEN", raising=False)
    get_settings.cache_clear()
    with pytest.raises(UserInputError, match="needs admin access"):
        admin_token(get_settings())
    monkeypatch.setenv("RECOMMNDR_ADMIN_TOKEN", "given")
    assert admin_token(get_settings()) == "given"


def test_numeric_timestamps_are_refused_not_misread(artifacts: Path, tmp_path: Path) -> None:
    path = tmp_path / "epoch.jsonl"
    path.write_text('{"user_id": 1, "item_id": 1, "event_type": "view", "ts": 1767225600}\n')
    r = run("monitor", "drift", "--artifacts", str(artifacts), "--events", str(path), "--no-log")
    assert r.returncode != 0 and "'ts' must be a timestamp" in said(r) and "Traceback" not in r.stderr


def test_the_api_window_is_at_most_an_hour(artifacts: Path) -> None:
    r = run(
        "monitor", "drift", "--artifacts", str(artifacts), "--api", "http://127.0.0.1:9", "--window", "2h"
    )
    assert r.returncode != 0 and "keeps its last 60 minutes" in said(r)
