"""``recommndr tune``: the parameters that matter, searched per dataset with Optuna.

The search never sees the protocol's test part: the data is split by the protocol (as
``recommndr evaluate`` splits it), and the training part is split again the same way into the
search's own training and validation parts; each trial fits every model on the first and scores
``two_stage`` NDCG@10 on the second (every validation user up to ``VALIDATION_USERS``).

A trial is made cheap without changing what it measures. What no searched parameter changes (the
ranker's labels, each stage's interactions, co-purchase counts, exclusions and recent products)
is built once per search (``pipeline.prepare``); the retrieval fit of a trial whose retrieval
parameters equal the previous trial's is reused, so a trial that changes only the ranker trains
LightGBM and scores, nothing else. The search runs in two phases to use that: first the
ranker's parameters with retrieval at the starting parameters (``RANKER_SHARE`` of the budget),
then the retrieval parameters with the ranker at the best found so far. TPE (seeded) samples
the ranker; retrieval climbs from the best trial by small steps (:func:`neighbour`, seeded).
The first trial is the starting parameters, so the best is never worse than them on validation;
a trial whose candidates hold less of the ranker's labels than the median of the finished
retrieval fits is pruned before its stage B and ranker are fit. Each trial is an MLflow child
run under one parent run, which gets the plots (optimisation history, parameter importances)
and the best parameters; those are written as a params file that ``recommndr train --params``
reads.
"""

from __future__ import annotations

import json
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
from recommndr.ranking.ranker import ExportError
from recommndr.training.pipeline import Retrieval, fit_ranker, fit_retrieval, prepare

log = logging.getLogger(__name__)
OBJECTIVE = "ndcg@10"
VALIDATION_USERS = 5000
# the ranker's parameters: a trial that changes only these reuses the previous trial's retrieval
RANKER_PARAMS = (
    "ranker.n_estimators",
    "ranker.num_leaves",
    "ranker.learning_rate",
    "ranker.min_child_samples",
)
# the first phase's share of the budget (time, or trials with --trials): ranker trials cost a
# fraction of a retrieval trial (Complete Journey here: ~15 s against ~45 s), so a third of the
# time buys about as many trials as the rest
RANKER_SHARE = 1 / 3
# a trial whose ranker fails its ONNX parity check (many trees can drift past the tolerance)
# is recorded as failed and the search goes on; it can never be the best
CATCH = (ExportError,)
# phase 2's hill climb: parameters moved per trial, and a log-scale step's spread (x/÷ ~1.65)
RETRIEVAL_MOVES = 2
LOG_STEP = 0.5


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
        # the request path ranks at most this many: capped where the API's latency was measured;
        # fewer than 200 lost recall and NDCG in every search so far (Complete Journey: 100-150
        # candidates held 0.11-0.13 of the labels against 0.28 at 300; the small shop's and
        # MovieLens' best were 250-300), so a short budget does not spend trials there
        "total": trial.suggest_int("candidates.total", 200, 300, step=50),
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

    # a small budget (Complete Journey, 10 minutes here under load: 8 ranker trials, 9 retrieval
    # trials of which 3 pruned) cannot spend many trials at random: TPE models after 4; the pruner
    # compares a trial's candidate recall with the median of at least 2 finished retrieval fits (a reused fit reports nothing: its recall is known)
    tpe = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    study = optuna.create_study(
        direction="maximize",
        sampler=tpe,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0, n_min_trials=2),
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
    prep_seconds = time.perf_counter()
    prepared = prepare(catalogue, inner.train, inner.end_us, base, {}, labels=protocol,
                       all_seen=inner.exclude_seen)  # fmt: skip
    log.info("per-search inputs prepared in %.1f s", time.perf_counter() - prep_seconds)
    last: dict[str, Any] = {}  # the previous trial's retrieval: key, fit, its als figure
    phase = {"name": "ranker"}

    def objective(trial: Any) -> float:
        cfg = suggest(trial, base)
        t0 = time.perf_counter()
        seen: dict[str, float] = {}
        key = retrieval_key(cfg)
        reused = last.get("key") == key
        trial.set_user_attr("phase", phase["name"])
        trial.set_user_attr("retrieval", "reused" if reused else "fit")

        def report(name: str, value: float) -> None:
            seen[name] = value
            trial.report(value, 0)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            if reused:
                retrieval: Retrieval = last["fit"]
                seen["candidate_recall"] = retrieval.recall
            else:
                last.clear()  # the previous fit's memory goes before this one is made
                retrieval = fit_retrieval(catalogue, inner.train, inner.end_us, cfg, {}, labels=protocol,
                                          all_seen=inner.exclude_seen, report=report, prepared=prepared)  # fmt: skip
            fitted = fit_ranker(catalogue, retrieval, cfg, {}, similar=False)
            res = score_split(
                inner,
                catalogue,
                fitted.bundle,
                VALIDATION_USERS,
                models=("two_stage",) if reused else ("als", "two_stage"),
                diversity=False,
                inter=prepared.b.inter,
            )
            if not reused:
                last.update(key=key, fit=retrieval, als=float(res["als"][OBJECTIVE]))
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            trial.set_user_attr("signals", seen)
        value = float(res["two_stage"][OBJECTIVE])
        trial.set_user_attr("recall@50", float(res["two_stage"]["recall@50"]))
        trial.set_user_attr("als_ndcg@10", last["als"])  # the first stage alone: the retrieval's
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
        budget = minutes * 60 if minutes > 0 else None
        ready = time.perf_counter() - t_start  # the prepared inputs' time counts against the budget
        first = None if trials is None else max(1, round(trials * RANKER_SHARE))
        fixed = searched(base)
        # phase 1: the ranker's parameters, retrieval as given (every trial after the first reuses it)
        study.sampler = _partly_fixed({n: v for n, v in fixed.items() if n not in RANKER_PARAMS}, tpe)
        phase1 = None if budget is None else max(budget - ready, 0.0) * RANKER_SHARE
        study.optimize(
            objective, n_trials=first, timeout=phase1, callbacks=[after], gc_after_trial=True, catch=CATCH
        )
        # phase 2: retrieval, from the best trial so far (its ranker kept): each trial moves
        # RETRIEVAL_MOVES of the retrieval parameters a step from it (a hill climb; see neighbour)
        phase["name"] = "retrieval"
        rng = np.random.default_rng(seed)
        names = [n for n in fixed if n not in RANKER_PARAMS]
        while (trials is None or len(study.trials) < trials) and (
            budget is None or time.perf_counter() - t_start < budget
        ):
            done = [t for t in study.trials if t.value is not None]
            if not done:
                break
            incumbent = study.best_trial
            study.enqueue_trial(neighbour(incumbent.params, incumbent.distributions, names, rng))
            study.optimize(objective, n_trials=1, callbacks=[after], gc_after_trial=True, catch=CATCH)
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


def retrieval_key(cfg: TrainConfig) -> str:
    """``cfg`` without the ranker's searched parameters: equal keys, equal retrieval fits."""
    d = cfg.model_dump()
    for name in RANKER_PARAMS:
        del d["ranker"][name.split(".")[1]]
    return json.dumps(d, sort_keys=True, default=str)


def _partly_fixed(fixed: dict[str, Any], sampler: Any) -> Any:
    """``sampler`` for every parameter but ``fixed`` (Optuna's PartialFixedSampler)."""
    import warnings

    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # "experimental" since Optuna 2.4
        return optuna.samplers.PartialFixedSampler(fixed, sampler)


def neighbour(
    params: dict[str, Any], distributions: dict[str, Any], names: list[str], rng: np.random.Generator
) -> dict[str, Any]:
    """``params`` with ``RETRIEVAL_MOVES`` of ``names`` moved one step inside their search
    range: a categorical to the next choice up or down, a log-scaled number by a factor
    exp(N(0, LOG_STEP)), a number on a grid by one or two grid steps. A short budget affords a
    handful of retrieval fits; TPE given trials that all share the incumbent's retrieval values
    rates every other region higher (its "bad" group outnumbers its "good" one) and samples far
    from the start, where Complete Journey's candidates held half the labels; steps from the best
    point keep the search where the starting parameters already are good."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = dict(params)
    for name in rng.choice(names, size=min(RETRIEVAL_MOVES, len(names)), replace=False).tolist():
        d, v = distributions[name], params[name]
        sign = 1 if rng.random() < 0.5 else -1
        if isinstance(d, CategoricalDistribution):
            i = list(d.choices).index(v)
            j = i + sign if 0 <= i + sign < len(d.choices) else i - sign
            out[name] = d.choices[j]
        elif isinstance(d, FloatDistribution) and d.log:
            out[name] = float(np.clip(v * math.exp(rng.normal(0.0, LOG_STEP)), d.low, d.high))
        elif isinstance(d, IntDistribution) and d.log:
            out[name] = int(np.clip(round(v * math.exp(rng.normal(0.0, LOG_STEP))), d.low, d.high))
        elif isinstance(d, IntDistribution | FloatDistribution):
            step = d.step or (d.high - d.low) / 10
            moved = v + sign * step * int(rng.integers(1, 3))
            if not d.low <= moved <= d.high:  # at the edge: the other way
                moved = v - sign * step * int(rng.integers(1, 3))
            out[name] = type(v)(min(max(moved, d.low), d.high))
    return out


def _row(trial: Any) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "phase": str(trial.user_attrs.get("phase", "")),
        "retrieval": str(trial.user_attrs.get("retrieval", "")),
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
