"""``recommndr tune`` on the loyal-shopper world: a short search logged to MLflow (SQLite), its
best parameters written where ``train --params`` reads them, the test part never used."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommndr.errors import UserInputError
from recommndr.lifecycle import tune as tune_mod
from recommndr.params import TrainConfig, load_train_config

pytestmark = pytest.mark.unit

BASE = TrainConfig.model_validate(
    {
        "holdout_days": 7,
        "label_days": 14,
        "als": {"factors": 16},
        "ranker": {"n_estimators": 40, "min_child_samples": 5},
    }
)


def test_a_short_search_writes_parameters_train_reads(
    plain_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    seen_ends: list[int] = []
    real_fit = tune_mod.fit_models

    def spy(catalogue, events, end_us, cfg, *a, **kw):  # type: ignore[no-untyped-def]
        seen_ends.append(int(events["ts_us"].max()))
        return real_fit(catalogue, events, end_us, cfg, *a, **kw)

    monkeypatch.setattr(tune_mod, "fit_models", spy)
    rows: list[dict[str, object]] = []
    out = tmp_path / "best.yaml"
    r = tune_mod.tune(plain_dir, out, BASE, "temporal", minutes=0, trials=3, progress=rows.append)

    # the first trial is the starting parameters; the best is at least as good on validation
    assert r.trials and r.start_value is not None and r.best_value >= r.start_value
    assert len(rows) == 3 and [x["number"] for x in rows] == [0, 1, 2]
    best = load_train_config(out)
    assert best == r.best and "best of 3 trials" in out.read_text().splitlines()[0]
    # never the protocol's test part: validation ends 7 days before the hold-out, which ends 7 days
    # before the data does
    from recommndr.data.interactions import US_PER_DAY, load_events

    end = int(load_events(plain_dir)["ts_us"].max()) + 1
    assert max(seen_ends) < end - 14 * US_PER_DAY

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(r.run_id)  # type: ignore[arg-type]
    assert parent.data.tags["recommndr.kind"] == "search" and parent.info.status == "FINISHED"
    assert parent.data.metrics["best.ndcg_at_10"] == pytest.approx(r.best_value)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{r.run_id}'"
    )
    assert len(children) == 3
    assert {c.data.tags["recommndr.trial_state"] for c in children} <= {"complete", "pruned"}
    files = {a.path for a in client.list_artifacts(r.run_id, "plots")}
    assert "plots/optimization_history.png" in files and "plots/param_importances.png" in files


def test_the_search_space_stays_valid_and_starts_from_the_given_parameters() -> None:
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(50):
        cfg = tune_mod.suggest(study.ask(), BASE)  # every sampled point is a valid TrainConfig
        assert cfg.candidates.total <= 300 and cfg.holdout_days == BASE.holdout_days
    again = tune_mod.suggest(optuna.trial.FixedTrial(tune_mod.searched(BASE)), BASE)
    assert again == BASE


def test_a_search_without_a_budget_is_refused(plain_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="budget"):
        tune_mod.tune(plain_dir, tmp_path / "x.yaml", BASE, minutes=0, trials=None, track=False)
