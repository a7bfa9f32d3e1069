"""``recommndr evaluate``'s two paths: a bundle fit on every event is refit with its parameters on
the protocol's split; a bundle fit before the end of the data (an earlier version's, with a
hold-out after it) is scored as it is."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recommndr.data.interactions import US_PER_DAY, load_events
from recommndr.data.schema import read_table, write_dataset
from recommndr.lifecycle import assess
from recommndr.params import TrainConfig
from recommndr.training.pipeline import train

pytestmark = pytest.mark.unit

CFG = TrainConfig.model_validate(
    {
        "holdout_days": 7,
        "label_days": 14,
        "als": {"factors": 16},
        "ranker": {"n_estimators": 20, "min_child_samples": 5},
    }
)


def test_a_bundle_with_events_after_it_is_scored_as_it_is(
    plain_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    end = int(load_events(plain_dir)["ts_us"].max()) + 1
    cut = end - 7 * US_PER_DAY
    events = read_table(plain_dir, "events")
    early = events.filter(pc.less(events["ts"], pa.scalar(cut, events.schema.field("ts").type)))
    shorter = tmp_path / "shorter"
    write_dataset(shorter, read_table(plain_dir, "products"), read_table(plain_dir, "users"), early)
    art = tmp_path / "art"
    train(shorter, art, CFG.model_copy(update={"holdout_days": 0}))  # served: fit up to the cut

    refits: list[object] = []
    monkeypatch.setattr(assess, "evaluate_params", lambda *a, **k: refits.append(a) or {})
    r = assess.evaluate_artifacts(plain_dir, art, "temporal", max_users=500)
    assert not refits and r["_meta"]["cutoff_us"] <= cut and r["_meta"]["users"] > 0
    assert r["two_stage"]["ndcg@10"] > r["global_popularity"]["ndcg@10"]
    # the random protocol always refits (with the bundle's parameters)
    assess.evaluate_artifacts(plain_dir, art, "random", max_users=500)
    assert len(refits) == 1 and refits[0][1] == CFG.model_copy(update={"holdout_days": 0})
