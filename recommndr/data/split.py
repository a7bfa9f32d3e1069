"""Temporal train / validation / test splits.

``time``: a global cut — the last ``test_days`` are the test period, the ``valid_days`` before them
validation, everything earlier training (no future leaks into training, cold users and items of
the late periods stay cold). ``user_last``: additionally, each user's last ``holdout_last_n``
interactions of the training period go to validation, for per-user next-item evaluation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, cast

import polars as pl

from recommndr.data.schema import read_table, write_table
from recommndr.errors import UserInputError

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitConfig:
    valid_days: int = 14
    test_days: int = 14
    mode: Literal["time", "user_last"] = "time"
    holdout_last_n: int = 1


def temporal_split(events: pl.DataFrame, cfg: SplitConfig) -> dict[str, pl.DataFrame]:
    """Split events (with a ``ts`` column) into ``train``, ``valid`` and ``test`` frames."""
    if cfg.valid_days < 0 or cfg.test_days < 1:
        raise UserInputError("test_days must be at least 1 and valid_days at least 0")
    if events.height == 0:
        raise UserInputError("no events to split")
    t_end = cast(datetime, events["ts"].max())
    t_start = cast(datetime, events["ts"].min())
    test_cut = t_end - timedelta(days=cfg.test_days)
    valid_cut = test_cut - timedelta(days=cfg.valid_days)
    if valid_cut <= t_start:
        raise UserInputError(
            f"the data spans {t_start} to {t_end}: too short for {cfg.valid_days} validation and "
            f"{cfg.test_days} test days"
        )
    test = events.filter(pl.col("ts") > test_cut)
    valid = events.filter((pl.col("ts") > valid_cut) & (pl.col("ts") <= test_cut))
    train = events.filter(pl.col("ts") <= valid_cut)
    if cfg.mode == "user_last" and cfg.holdout_last_n > 0:
        ranked = train.with_columns(
            pl.col("ts").rank("ordinal", descending=True).over("user_id").alias("__r"),
            pl.len().over("user_id").alias("__n"),
        )
        last = (pl.col("__r") <= cfg.holdout_last_n) & (pl.col("__n") > cfg.holdout_last_n)
        valid = pl.concat([ranked.filter(last).drop("__r", "__n"), valid]).sort("ts")
        train = ranked.filter(~last).drop("__r", "__n")
    return {"train": train, "valid": valid, "test": test}


def split_dataset(root: Path, out: Path, cfg: SplitConfig) -> dict[str, int]:
    """Write ``out/{train,valid,test}.parquet`` (events) and ``out/split.json``; returns row counts."""
    events = pl.from_arrow(read_table(root, "events"))
    assert isinstance(events, pl.DataFrame)
    parts = temporal_split(events, cfg)
    counts = {}
    for name in SPLITS:
        write_table(parts[name].to_arrow(), out, name)
        counts[name] = parts[name].height
    bounds = {name: [str(parts[name]["ts"].min()), str(parts[name]["ts"].max())] for name in SPLITS}
    (Path(out) / "split.json").write_text(
        json.dumps({"config": asdict(cfg), "rows": counts, "bounds": bounds}, indent=2) + "\n"
    )
    return counts
