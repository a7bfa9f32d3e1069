"""``recommndr tune``: the parameters that matter, searched per dataset with Optuna.

The search never sees the protocol's test part: the data is split by the protocol (as
``recommndr evaluate`` splits it), and the training part is split again the same way into the
search's own training and validation parts; each trial fits every model on the first and scores
``two_stage`` NDCG@10 on the second. TPE sampling (seeded); the first trial is the starting
parameters, so the best is never worse than them on validation; a trial whose candidates hold
less of the ranker's labels than the median trial at that point is pruned before its ranker is
trained. Each trial is an MLflow child run under one parent run, which gets the plots (optimisation
history, parameter importances) and the best parameters; those are written as a params file that
``recommndr train --params`` reads.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from recommndr.data.interactions import load_catalogue, load_events
from recommndr.errors import UserInputError
from recommndr.evaluation.evaluate import score_split
from recommndr.evaluation.protocols import Protocol, split
from recommndr.params import TrainConfig
from recommndr.training.pipeline import fit_models

log = logging.getLogger(__name__)
OBJECTIVE = "ndcg@10"
VALIDATION_USERS = 5000


def suggest(trial: Any, base: TrainConfig) -> TrainConfig:
    """One point of the search space, on top of ``base`` (what is not searched stays as it is)."""
    d = base.model_dump()
    d["als"] |= {
        "factors": trial.suggest_categorical("als.factors", [16, 32, 64, 128]),
        "regularization": trial.suggest_float("als.regularization", 1e-3, 1.0, log=True),
        "alpha": trial.suggest_float("als.alpha", 0.3, 40.0, log=True),
        "half_life_days": trial.suggest_float("als.half_life_days", 3.0, 365.0, log=True),
    }
    d["weights"] |= {
        "add_to_cart": trial.suggest_float("weights.add_to_cart", 1.0, 20.0, log=True),
        "purchase": trial.suggest_float("weights.purchase", 1.0, 40.0, log=True),
    }
    d["popularity"] |= {
        "half_life_days": trial.suggest_float("popularity.half_life_days", 1.0, 90.0, log=True)
    }
    d["candidates"] |= {
        "als": trial.suggest_int("candidates.als", 50, 400, step=25),
        "copurchase": trial.suggest_int("candidates.copurchase", 0, 100, step=10),
        "popularity": trial.suggest_int("candidates.popularity", 20, 200, step=20),
        # the request path ranks at most this many: capped where the API's latency was measured
        "total": trial.suggest_int("candidates.total", 100, 300, step=50),
    }
    d["ranker"] |= {
        "n_estimators": trial.suggest_int("ranker.n_estimators", 20, 200, step=10),
        "num_leaves": trial.suggest_int("ranker.num_leaves", 7, 63),
        "learning_rate": trial.suggest_float("ranker.learning_rate", 0.02, 0.3, log=True),
        "min_child_samples": trial.suggest_int("ranker.min_child_samples", 5, 100, log=True),
    }
    return TrainConfig.model_validate(d)


def searched(cfg: TrainConfig) -> dict[str, Any]:
    """``cfg``'s values of the searched parameters, named as :func:`suggest` names them."""
    d = cfg.model_dump()
    names = ("als.factors", "als.regularization", "als.alpha", "als.half_life_days", "weights.add_to_cart",
             "weights.purchase", "popularity.half_life_days", "candidates.als", "candidates.copurchase",
             "candidates.popularity", "candidates.total", "ranker.n_estimators", "ranker.num_leaves",
             "ranker.learning_rate", "ranker.min_child_samples")  # fmt: skip
    return {n: d[n.split(".")[0]][n.split(".")[1]] for n in names}


@dataclass
class TuneResult:
    best: TrainConfig
    best_value: float
    start_value: float | None  # the starting parameters' validation score (trial 0)
    trials: list[dict[str, Any]]  # number, state, value, seconds, params — best first
    out: Path
    run_id: str | None
    seconds: float
    validation_users: int
    sampled_users: int | None


def sample_users(events: pl.DataFrame, n: int | None, seed: int) -> pl.DataFrame:
    """All events of ``n`` randomly chosen users (full scale tunes on a sample)."""
    if n is None:
        return events
    users = events["user_id"].unique().sort().to_numpy()
    if users.shape[0] <= n:
        return events
    keep = np.random.default_rng(seed).choice(users, n, replace=False)
    return events.filter(pl.col("user_id").is_in(keep.tolist()))


def tune(
    data: Path,
    out: Path,
    base: TrainConfig,
    protocol: Protocol = "temporal",
    minutes: float = 10.0,
    trials: int | None = None,
    seed: int = 42,
    users: int | None = None,
    track: bool = True,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TuneResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if minutes <= 0 and trials is None:
        raise UserInputError("give a time budget (--minutes > 0) or a number of trials (--trials)")
    t_start = time.perf_counter()
    catalogue = load_catalogue(data)
    events = sample_users(load_events(data), users, seed)
    outer = split(events, catalogue, protocol, base.holdout_days)  # its test part is never looked at
    inner = split(outer.train, catalogue, protocol, base.holdout_days)
    del events, outer
    log.info(
        "tuning on %s validation users (%s protocol)", f"{inner.targets['user_id'].n_unique():,}", protocol
    )

    study = optuna.create_study(
        direction="maximize",
        # a small budget (Complete Journey: ~6 trials in 10 minutes here) cannot spend many
        # trials at random: TPE models after 4, and a trial whose candidates hold less of the
        # labels than the median of those before it is stopped once 2 have finished
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    study.enqueue_trial(searched(base))
    search = None
    if track:
        from recommndr.registry.tracking import SearchLog

        search = SearchLog(
            f"tune {Path(data).name} ({protocol})",
            {
                "data": str(data),
                "protocol": protocol,
                "minutes": minutes,
                "trials": trials,
                "seed": seed,
                "users": users,
                "objective": f"two_stage {OBJECTIVE} (validation)",
            },
        )

    def objective(trial: Any) -> float:
        cfg = suggest(trial, base)
        t0 = time.perf_counter()
        seen: dict[str, float] = {}

        def report(name: str, value: float) -> None:
            seen[name] = value
            trial.report(value, 0)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            fitted = fit_models(catalogue, inner.train, inner.end_us, cfg, {}, labels=protocol,
                                all_seen=inner.exclude_seen, report=report, similar=False)  # fmt: skip
            res = score_split(
                inner,
                catalogue,
                fitted.bundle,
                VALIDATION_USERS,
                models=("als", "two_stage"),
                diversity=False,
            )
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            trial.set_user_attr("signals", seen)
        value = float(res["two_stage"][OBJECTIVE])
        trial.set_user_attr("recall@50", float(res["two_stage"]["recall@50"]))
        trial.set_user_attr("als_ndcg@10", float(res["als"][OBJECTIVE]))
        return value

    def after(study: Any, trial: Any) -> None:
        row = _row(trial)
        if search is not None:
            metrics = {k: v for k, v in row.items() if isinstance(v, float) and k != "number"}
            search.trial(trial.number, trial.params, metrics, row["state"])
        if progress is not None:
            best = study.best_value if any(t.value is not None for t in study.trials) else math.nan
            progress(row | {"best": best, "elapsed": time.perf_counter() - t_start})

    try:
        study.optimize(objective, n_trials=trials, timeout=minutes * 60 if minutes > 0 else None,
                       callbacks=[after], gc_after_trial=True)  # fmt: skip
        done = [t for t in study.trials if t.value is not None]
        if not done:
            raise UserInputError("no trial finished within the budget: give more --minutes")
        best = suggest(optuna.trial.FixedTrial(study.best_trial.params), base)
        rows = sorted(
            (_row(t) for t in study.trials),
            key=lambda r: -r["value"] if r["value"] == r["value"] else math.inf,
        )
        start = study.trials[0].value
        write_params(out, best, study.best_value, start, protocol, data, len(study.trials))
        if search is not None:
            search.finish(
                {OBJECTIVE: study.best_value}, _figures(study), {"best_params.yaml": out.read_text()}
            )
    except BaseException:
        if search is not None:
            search.close(failed=True)
        raise
    if search is not None:
        search.close()
    return TuneResult(best, float(study.best_value), None if start is None else float(start), rows, out,
                      search.run_id if search else None, time.perf_counter() - t_start,
                      int(inner.targets["user_id"].n_unique()), users)  # fmt: skip


def _row(trial: Any) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": float(trial.value) if trial.value is not None else math.nan,
        "seconds": float(trial.user_attrs.get("seconds", math.nan)),
        "candidate_recall": float(trial.user_attrs.get("signals", {}).get("candidate_recall", math.nan)),
        "als_ndcg@10": float(trial.user_attrs.get("als_ndcg@10", math.nan)),
        "params": dict(trial.params),
    }


def write_params(
    out: Path, cfg: TrainConfig, value: float, start: float | None, protocol: str, data: Path, n: int
) -> None:
    """A params file whose ``train`` section is ``cfg`` (``train --params`` reads it)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = (
        f"# recommndr tune --data {data} --protocol {protocol}: best of {n} trials, two_stage {OBJECTIVE} "
        f"{value:.4f} on validation"
        + (f" (starting parameters {start:.4f})" if start is not None else "")
        + "\n"
    )
    out.write_text(head + yaml.safe_dump({"train": cfg.model_dump()}, sort_keys=False))


def _figures(study: Any) -> dict[str, Any]:
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as ovm

    figs: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # optuna's matplotlib plots are "experimental"
        figs["optimization_history.png"] = ovm.plot_optimization_history(study).figure
        completed = [t for t in study.trials if t.value is not None]
        if len(completed) >= 3:  # importances need a few finished trials
            try:
                figs["param_importances.png"] = ovm.plot_param_importances(study).figure
            except (RuntimeError, ValueError) as exc:  # e.g. every finished trial scored the same
                log.warning("no parameter importances: %s", exc)
    return figs
