"""``recommndr tune`` on the loyal-shopper world: a short search logged to MLflow (SQLite), its
best parameters written where ``train --params`` reads them, the test part never used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    real_fit = tune_mod.fit_retrieval

    def spy(catalogue, events, end_us, cfg, *a, **kw):  # type: ignore[no-untyped-def]
        seen_ends.append(int(events["ts_us"].max()))
        return real_fit(catalogue, events, end_us, cfg, *a, **kw)

    monkeypatch.setattr(tune_mod, "fit_retrieval", spy)
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


def test_ranker_trials_reuse_the_retrieval_and_score_as_a_fresh_fit(plain_dir: Path, tmp_path: Path) -> None:
    """Phase 1 varies the ranker only, so its trials after the first reuse one retrieval fit;
    phase 2 climbs in retrieval from the best trial, with the ranker at phase 1's best. A reused trial's validation score
    is what a fit from nothing with its parameters scores: the reuse saves time, not honesty."""
    import optuna

    from recommndr.data.interactions import load_catalogue, load_events
    from recommndr.evaluation.evaluate import score_split
    from recommndr.evaluation.protocols import split
    from recommndr.training.pipeline import fit_models

    calls: list[str] = []
    real_fit = tune_mod.fit_retrieval

    def spy(catalogue, events, end_us, cfg, *a, **kw):  # type: ignore[no-untyped-def]
        calls.append(tune_mod.retrieval_key(cfg))
        return real_fit(catalogue, events, end_us, cfg, *a, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(tune_mod, "fit_retrieval", spy)
    mp.setattr(tune_mod, "RANKER_SHARE", 0.5)
    try:
        r = tune_mod.tune(plain_dir, tmp_path / "b.yaml", BASE, "temporal", minutes=0, trials=6, track=False)
    finally:
        mp.undo()
    rows = sorted(r.trials, key=lambda x: x["number"])
    assert [x["phase"] for x in rows] == ["ranker"] * 3 + ["retrieval"] * 3
    assert [x["retrieval"] for x in rows[:3]] == ["fit", "reused", "reused"]
    assert all(x["retrieval"] == "fit" for x in rows[3:])
    # one retrieval fit for the whole first phase, one per trial after it
    assert len(calls) == 4 and calls[0] == tune_mod.retrieval_key(BASE)
    retrieval_names = [n for n in tune_mod.searched(BASE) if n not in tune_mod.RANKER_PARAMS]
    start = tune_mod.searched(BASE)
    for x in rows[1:3]:  # the ranker varies, retrieval is the starting one
        assert {n: x["params"][n] for n in retrieval_names} == {n: start[n] for n in retrieval_names}
    assert len({tuple(x["params"][n] for n in tune_mod.RANKER_PARAMS) for x in rows[:3]}) == 3
    best_ranker = max(rows[:3], key=lambda x: x["value"])["params"]
    for j, x in enumerate(rows[3:], start=3):  # the ranker stays at phase 1's best ...
        assert all(x["params"][n] == best_ranker[n] for n in tune_mod.RANKER_PARAMS)
        # ... and retrieval moves RETRIEVAL_MOVES steps from the best finished trial before it
        incumbent = max((t for t in rows[:j] if t["value"] == t["value"]), key=lambda t: t["value"])
        moved = [n for n in retrieval_names if x["params"][n] != incumbent["params"][n]]
        assert 1 <= len(moved) <= tune_mod.RETRIEVAL_MOVES

    reused = rows[2]
    cfg = tune_mod.suggest(optuna.trial.FixedTrial(reused["params"]), BASE)
    catalogue = load_catalogue(plain_dir)
    outer = split(load_events(plain_dir), catalogue, "temporal", BASE.holdout_days)
    inner = split(outer.train, catalogue, "temporal", BASE.holdout_days)
    fresh = fit_models(catalogue, inner.train, inner.end_us, cfg, {}, similar=False)
    res = score_split(inner, catalogue, fresh.bundle, tune_mod.VALIDATION_USERS, models=("two_stage",),
                      diversity=False)  # fmt: skip
    assert reused["value"] == pytest.approx(res["two_stage"]["ndcg@10"], abs=1e-12)


def test_the_retrieval_key_ignores_only_the_rankers_searched_parameters() -> None:
    key = tune_mod.retrieval_key(BASE)
    ranker_only = BASE.model_copy(update={"ranker": BASE.ranker.model_copy(update={"num_leaves": 7})})
    assert tune_mod.retrieval_key(ranker_only) == key
    for update in ({"ranker": BASE.ranker.model_copy(update={"negatives_per_user": 7})},
                   {"als": BASE.als.model_copy(update={"alpha": 3.0})},
                   {"candidates": BASE.candidates.model_copy(update={"total": 250})},
                   {"seed": 7}):  # fmt: skip
        assert tune_mod.retrieval_key(BASE.model_copy(update=update)) != key


def test_a_neighbour_moves_few_parameters_and_stays_in_the_search_space() -> None:
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.enqueue_trial(tune_mod.searched(BASE))
    t = study.ask()
    tune_mod.suggest(t, BASE)
    names = [n for n in t.params if n not in tune_mod.RANKER_PARAMS]
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = tune_mod.neighbour(t.params, t.distributions, names, rng)
        moved = [n for n in p if p[n] != t.params[n]]
        assert 1 <= len(moved) <= tune_mod.RETRIEVAL_MOVES and not set(moved) & set(tune_mod.RANKER_PARAMS)
        for n in moved:
            assert t.distributions[n]._contains(t.distributions[n].to_internal_repr(p[n]))
        cfg = tune_mod.suggest(optuna.trial.FixedTrial(p), BASE)  # a valid configuration
        assert cfg.candidates.total >= 200


def test_a_ranker_that_fails_its_export_check_fails_its_trial_not_the_search(
    plain_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recommndr.ranking.ranker import ExportError

    real = tune_mod.fit_ranker
    calls: list[int] = []

    def flaky(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise ExportError("ONNX ranker differs from LightGBM by 1.30e-05 (> 1e-05)")
        return real(*a, **kw)

    monkeypatch.setattr(tune_mod, "fit_ranker", flaky)
    r = tune_mod.tune(plain_dir, tmp_path / "b.yaml", BASE, "temporal", minutes=0, trials=3, track=False)
    states = {x["number"]: x["state"] for x in r.trials}
    assert len(states) == 3 and states[1] == "fail" and states[0] == "complete"
    assert r.best == tune_mod.suggest(__import__("optuna").trial.FixedTrial(r.trials[0]["params"]), BASE)
