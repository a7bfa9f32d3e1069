"""``recommndr train``: fit every model and write the artifacts the API needs.

Time is split so that nothing from the future leaks. A fit on the events before some end
(:func:`fit_models`) has two stages: stage A fits retrieval on events before the last
``label_days`` and learns the ranker on its candidates (labels: purchase > add to cart > view in
those days); stage B refits retrieval, popularity, co-purchase, similar items and the feature
tables on everything before the end. ``train`` fits twice: before the last ``holdout_days``, to
score every model on them (the figures in the manifest and ``metrics.json``), then on every event
for the served bundle.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recommndr.bundle import Bundle
from recommndr.data.interactions import (
    US_PER_DAY,
    Catalogue,
    Interactions,
    build_interactions,
    load_catalogue,
    load_events,
)
from recommndr.data.schema import conform, read_table, write_table
from recommndr.errors import UserInputError
from recommndr.evaluation.evaluate import score_split
from recommndr.evaluation.protocols import Protocol, graded_targets, random_pairs, span_us, temporal_split
from recommndr.monitoring.profile import build_reference, events_with_price
from recommndr.monitoring.reference import FILE as REFERENCE_FILE
from recommndr.params import TrainConfig
from recommndr.ranking.candidates import CandidateGenerator, Exclusions, queries_for, recent_items
from recommndr.ranking.features import FEATURES, build_feature_tables
from recommndr.ranking.ranker import OnnxRanker, TrainingSet, check_parity, to_onnx, train_ranker
from recommndr.ranking.two_stage import candidate_features
from recommndr.registry.artifacts import dataset_hash, write_manifest
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.index import OnnxIndex, build_index
from recommndr.retrieval.popularity import PopularityRetriever
from recommndr.similarity.copurchase import CoPurchase, CoPurchaseRetriever, fit_copurchase
from recommndr.similarity.similar import SimilarItems, similar_table

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    manifest: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    ranker_rows: int = 0
    parity: float = 0.0
    metrics: dict[str, Any] | None = None  # the hold-out evaluation (None without a hold-out)


PEAK_RSS: dict[str, float] = {}


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    log.info("%s ...", name)
    t0 = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t0
    PEAK_RSS[name] = _peak_rss_gb()
    log.info("%s: %.1f s (peak memory so far %.2f GB)", name, timings[name], PEAK_RSS[name])


@dataclass
class Stage:
    inter: Interactions
    als: ALSRetriever
    popularity: PopularityRetriever
    generator: CandidateGenerator
    recent: tuple[np.ndarray, np.ndarray]


@dataclass
class StageInputs:
    """What a stage fit needs that no searched parameter changes: the interactions before its
    cut-off, the co-purchase counts (``cfg.copurchase``), the exclusions and each user's recent
    products. A search builds them once for all its trials (co-purchase alone was a third of a
    Complete Journey trial)."""

    inter: Interactions
    copurchase: CoPurchase
    exclusions: Exclusions
    recent: tuple[np.ndarray, np.ndarray]


def stage_inputs(
    catalogue: Catalogue,
    events: pl.DataFrame,
    cutoff: int,
    cfg: TrainConfig,
    timings: dict[str, float],
    tag: str,
    all_seen: bool = False,
) -> StageInputs:
    with _timed(timings, f"{tag}: interactions"):
        inter = build_interactions(catalogue, events, cutoff)
        if inter.n_users == 0:
            raise UserInputError("no events before the training cut-off: the dataset is too short")
    with _timed(timings, f"{tag}: co-purchase, exclusions"):
        cop = fit_copurchase(inter, cfg.copurchase)
        excl = Exclusions.fit(inter, all_seen=all_seen)
        recent = recent_items(inter)
    return StageInputs(inter, cop, excl, recent)


def fit_stage(
    catalogue: Catalogue,
    events: pl.DataFrame,
    cutoff: int,
    cfg: TrainConfig,
    timings: dict[str, float],
    tag: str,
    all_seen: bool = False,
    inputs: StageInputs | None = None,
) -> tuple[Stage, Any]:
    """Retrieval, popularity and the feature tables on ``inputs`` (built from ``events`` before
    ``cutoff`` when not given)."""
    if inputs is None:
        inputs = stage_inputs(catalogue, events, cutoff, cfg, timings, tag, all_seen)
    inter, cop, excl = inputs.inter, inputs.copurchase, inputs.exclusions
    with _timed(timings, f"{tag}: ALS"):
        als = ALSRetriever.fit(inter, cfg.weights, cfg.als, cfg.seed)
    with _timed(timings, f"{tag}: popularity"):
        pop = PopularityRetriever.fit(inter, cfg.weights, cfg.popularity)
    gen = CandidateGenerator(
        als, pop, CoPurchaseRetriever(cop, cfg.copurchase.recent_items), excl, cfg.candidates
    )
    with _timed(timings, f"{tag}: feature tables"):
        tables = build_feature_tables(inter, pop.pop, excl.repeatable_l3)
    return Stage(inter, als, pop, gen, inputs.recent), (cop, excl, tables)


def ranker_training_set(
    stage: Stage, tables: Any, labels: pl.DataFrame, cfg: TrainConfig
) -> tuple[TrainingSet, float]:
    """The ranker's rows: for each sampled labelled user, their candidates' features with every
    positive and a sample of negatives; and the candidates' recall of the labels (the share of
    the sampled users' labelled products that retrieval put among their candidates)."""
    rng = np.random.default_rng(cfg.seed)
    users = labels["user_id"].unique().sort().to_numpy()
    if users.shape[0] > cfg.ranker.max_train_users:
        users = np.sort(rng.choice(users, cfg.ranker.max_train_users, replace=False))
    uidx = stage.inter.user_index(users)
    queries = queries_for(uidx, *stage.recent)
    n_items = stage.inter.catalogue.n_items
    lab = labels.filter(pl.col("user_id").is_in(users.tolist()))
    row_of = {int(u): j for j, u in enumerate(users)}
    lab_keys = (
        np.array([row_of[int(u)] for u in lab["user_id"].to_list()], dtype=np.int64) * n_items
        + lab["item"].to_numpy()
    )
    order = np.argsort(lab_keys)
    lab_keys, lab_gain = lab_keys[order], lab["gain"].to_numpy()[order]
    Xs, ys, groups = [], [], []
    found = 0
    for s in range(0, len(queries), 2000):
        if s and s % 10_000 == 0:
            log.info("ranker: candidates for %s of %s users", f"{s:,}", f"{len(queries):,}")
        qs = queries[s : s + 2000]
        cands = stage.generator.generate(qs)
        X = candidate_features(tables, qs, cands)
        rows = np.repeat(np.arange(s, s + len(qs)), [c.items.shape[0] for c in cands])
        items = np.concatenate([c.items for c in cands]) if cands else np.zeros(0, np.int64)
        key = rows * n_items + items
        pos = np.minimum(np.searchsorted(lab_keys, key), max(lab_keys.shape[0] - 1, 0))
        y = np.where(lab_keys[pos] == key, lab_gain[pos], 0).astype(np.int32)
        found += int((y > 0).sum())
        # per user: all positives and a sample of negatives; users without a positive teach nothing
        start = 0
        for c in cands:
            n = c.items.shape[0]
            yy = y[start : start + n]
            pos_idx = np.flatnonzero(yy > 0)
            if pos_idx.size:
                neg_idx = np.flatnonzero(yy == 0)
                if neg_idx.size > cfg.ranker.negatives_per_user:
                    neg_idx = rng.choice(neg_idx, cfg.ranker.negatives_per_user, replace=False)
                keep = np.sort(np.concatenate([pos_idx, neg_idx]))
                Xs.append(X[start + keep])
                ys.append(yy[keep])
                groups.append(keep.shape[0])
            start += n
    if not groups:
        raise UserInputError(
            "the label window has no event that the candidates cover: cannot train the ranker"
        )
    recall = found / max(lab.height, 1)
    return TrainingSet(np.concatenate(Xs), np.concatenate(ys), np.array(groups, dtype=np.int64)), recall


@dataclass
class Fitted:
    """Models fit on events before ``end_us``: the bundle, the LightGBM ranker (for its own
    model file and importances), its training rows and the ONNX parity; ``stage`` is the
    retrieval fit on everything before ``end_us`` (a later fit whose ranker data ends there reuses it)."""

    bundle: Bundle
    model: Any
    rows: int
    users: int
    parity: float
    stage: Stage
    tables: Any
    label_cutoff_us: int | None


def ranker_labels(
    catalogue: Catalogue, events: pl.DataFrame, end_us: int, cfg: TrainConfig, labels: Protocol
) -> tuple[pl.DataFrame, pl.DataFrame, int | None]:
    """What stage A fits on and what labels its candidates. ``temporal``: the events before the
    last ``label_days`` and the best event type in them (the protocol the shop lives by);
    ``random``: a random 75 % of each user's products and the rest, binary (the random protocol's
    question, asked of the training part only)."""
    if labels == "random":
        fit_on, held = random_pairs(events, catalogue, seed=cfg.seed + 1)
        if held.height == 0:
            raise UserInputError("no user has two products: the ranker has nothing to learn from")
        return fit_on, held.with_columns(pl.lit(1, dtype=pl.Int8).alias("gain")), None
    label_cut = end_us - cfg.label_days * US_PER_DAY
    start = span_us(events)[0]
    if label_cut <= start:
        raise UserInputError(
            f"the training period spans {(end_us - start) / US_PER_DAY:.0f} days: too short for "
            f"{cfg.label_days} label days"
        )
    window = events.filter((pl.col("ts_us") >= label_cut) & (pl.col("ts_us") < end_us))
    return events.filter(pl.col("ts_us") < label_cut), graded_targets(window, catalogue), label_cut


@dataclass
class Prepared:
    """What every fit of one search on the same events shares: the ranker's labels and each
    stage's :class:`StageInputs`, made once (:func:`prepare`) for ``key``: the end, the label rule
    and the parameters they depend on (none of them searched). A fit given a ``Prepared`` made
    for another key refuses it."""

    key: tuple[Any, ...]
    label_frame: pl.DataFrame
    label_cut: int | None
    a: StageInputs
    b: StageInputs


def _prepared_key(end_us: int, cfg: TrainConfig, labels: Protocol, all_seen: bool) -> tuple[Any, ...]:
    return (end_us, labels, all_seen, cfg.label_days, cfg.seed, cfg.copurchase.model_dump())


def prepare(
    catalogue: Catalogue,
    events: pl.DataFrame,
    end_us: int,
    cfg: TrainConfig,
    timings: dict[str, float],
    labels: Protocol = "temporal",
    all_seen: bool = False,
    tag: str = "",
) -> Prepared:
    """The parts of :func:`fit_models` on ``events`` before ``end_us`` that no searched parameter
    changes (ALS, weights, half-lives, candidates and the ranker's trees may vary between fits
    that share them)."""
    fit_on, label_frame, label_cut = ranker_labels(catalogue, events, end_us, cfg, labels)
    p = f"{tag}: " if tag else ""
    a = stage_inputs(catalogue, fit_on, label_cut or end_us, cfg, timings, f"{p}A (ranker data)", all_seen)
    b = stage_inputs(catalogue, events, end_us, cfg, timings, f"{p}B", all_seen)
    return Prepared(_prepared_key(end_us, cfg, labels, all_seen), label_frame, label_cut, a, b)


@dataclass
class Retrieval:
    """A fit up to its ranker: the ranker's training rows from stage A's candidates and their
    recall of the labels, and stage B (retrieval, popularity, co-purchase, exclusions and feature
    tables on every event before the end). The ranker's own parameters (trees, leaves, learning
    rate, minimum leaf size) change nothing here, so fits that differ only in them share one."""

    training: TrainingSet
    recall: float
    stage_b: Stage
    copurchase: CoPurchase
    exclusions: Exclusions
    tables_b: Any
    label_cut: int | None


def fit_retrieval(
    catalogue: Catalogue,
    events: pl.DataFrame,
    end_us: int,
    cfg: TrainConfig,
    timings: dict[str, float],
    labels: Protocol = "temporal",
    all_seen: bool = False,
    tag: str = "",
    reuse: tuple[Stage, Any] | None = None,
    report: Callable[[str, float], None] | None = None,
    prepared: Prepared | None = None,
) -> Retrieval:
    """Stage A, the ranker's training rows and stage B (see :func:`fit_models`). ``prepared``
    (:func:`prepare`, for the same events, end, labels and unsearched parameters) replaces the
    labels and each stage's inputs; ``report(name, value)`` hears the candidates' recall of the
    ranker's labels before stage B is fit (a search stops a hopeless trial there)."""
    p = f"{tag}: " if tag else ""
    if prepared is not None:
        if prepared.key != _prepared_key(end_us, cfg, labels, all_seen):
            raise ValueError("the prepared inputs were made for another end, label rule or parameters")
        fit_on, label_frame, label_cut = events, prepared.label_frame, prepared.label_cut
    else:
        fit_on, label_frame, label_cut = ranker_labels(catalogue, events, end_us, cfg, labels)
    if reuse is not None and label_cut is not None and reuse[0].inter.cutoff_us == label_cut:
        stage_a, tables_a = reuse
        log.info("%sstage A is the earlier fit before %s (reused)", p, label_cut)
    else:
        stage_a, (_, _, tables_a) = fit_stage(catalogue, fit_on, label_cut or end_us, cfg, timings,
                                              f"{p}A (ranker data)", all_seen,
                                              prepared.a if prepared else None)  # fmt: skip
    with _timed(timings, f"{p}ranker: candidates and features"):
        ts, recall = ranker_training_set(stage_a, tables_a, label_frame, cfg)
    log.info("%scandidates hold %.1f %% of the ranker's labels", p, 100 * recall)
    del stage_a, tables_a
    if report is not None:  # a search may stop a hopeless trial here, before anything else is fit
        report("candidate_recall", recall)
    stage_b, (cop, excl, tables_b) = fit_stage(catalogue, events, end_us, cfg, timings, f"{p}B", all_seen,
                                               prepared.b if prepared else None)  # fmt: skip
    return Retrieval(ts, recall, stage_b, cop, excl, tables_b, label_cut)


def fit_ranker(
    catalogue: Catalogue,
    retrieval: Retrieval,
    cfg: TrainConfig,
    timings: dict[str, float],
    tag: str = "",
    similar: bool = True,
) -> Fitted:
    """The ranker on ``retrieval``'s rows with ``cfg.ranker``, and the bundle of both."""
    p = f"{tag}: " if tag else ""
    ts, stage_b = retrieval.training, retrieval.stage_b
    with _timed(timings, f"{p}ranker: LightGBM"):
        model = train_ranker(ts, cfg.ranker, cfg.seed)
    with _timed(timings, f"{p}ranker: ONNX export and parity"):
        ranker_onnx = to_onnx(model)
        sample = ts.X[
            np.random.default_rng(cfg.seed).choice(ts.X.shape[0], min(20_000, ts.X.shape[0]), replace=False)
        ]
        parity = check_parity(model, ranker_onnx, sample)
    if similar:
        with _timed(timings, f"{p}similar items"):
            nbr, sim = similar_table(stage_b.als.item_factors, stage_b.als.item_known, cfg.similar_items)
    else:  # scoring a fit needs no similar-items table (a search, an evaluation): none, -1 padded
        n = catalogue.n_items
        nbr, sim = np.full((n, 0), -1, np.int64), np.full((n, 0), -np.inf, np.float32)
    pop = stage_b.popularity
    bundle = Bundle(
        config=cfg,
        catalogue=catalogue,
        user_ids=stage_b.inter.user_ids,
        recent_indptr=stage_b.recent[0],
        recent_items=stage_b.recent[1],
        als=stage_b.als,
        popularity=pop,
        copurchase=retrieval.copurchase,
        exclusions=retrieval.exclusions,
        features=retrieval.tables_b,
        ranker=OnnxRanker(ranker_onnx, threads=2),
        similar=SimilarItems(catalogue, nbr, sim, stage_b.als.item_known, pop.pop),
    )
    return Fitted(bundle, model, int(ts.X.shape[0]), int(ts.group.shape[0]), parity, stage_b,
                  retrieval.tables_b, retrieval.label_cut)  # fmt: skip


def fit_models(
    catalogue: Catalogue,
    events: pl.DataFrame,
    end_us: int,
    cfg: TrainConfig,
    timings: dict[str, float],
    labels: Protocol = "temporal",
    all_seen: bool = False,
    tag: str = "",
    reuse: tuple[Stage, Any] | None = None,
    report: Callable[[str, float], None] | None = None,
    similar: bool = True,
    prepared: Prepared | None = None,
) -> Fitted:
    """Every model on ``events`` before ``end_us``. Stage A fits retrieval on the ranker's data
    (:func:`ranker_labels`) and learns the ranker on its candidates; stage B refits retrieval,
    popularity, co-purchase, similar items and the feature tables on all of it. ``reuse``: an
    earlier fit whose end is this fit's label cut-off serves as stage A (same events, same
    parameters: the served fit after the hold-out evaluation, when label_days == holdout_days).
    ``report(name, value)`` hears the candidates' recall of the ranker's labels; without
    ``similar`` the bundle's similar-items table is left empty (nothing scored needs it);
    ``prepared``: the parts a search shares between its fits (:func:`prepare`)."""
    retrieval = fit_retrieval(catalogue, events, end_us, cfg, timings, labels, all_seen, tag, reuse, report,
                              prepared)  # fmt: skip
    return fit_ranker(catalogue, retrieval, cfg, timings, tag, similar)


def headline(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The figures a manifest keeps of an evaluation: each model's overall metrics."""
    return {
        m: {k: float(v) for k, v in r.items() if isinstance(v, float)}
        for m, r in metrics.items()
        if not m.startswith("_")
    }


def train(
    data: Path,
    out: Path,
    cfg: TrainConfig,
    progress: Callable[[str], None] | None = None,
    eval_users: int = 20_000,
) -> TrainResult:
    """Evaluate, then fit what is served. With a hold-out (``holdout_days`` > 0) every model is
    first fit on the events before it and scored on it (the temporal protocol, beside the
    baselines); the served bundle is then fit on ALL events with the same parameters, so a shop
    that retrains nightly serves its latest days too. The manifest records both cut-offs and the
    evaluation's figures; ``metrics`` holds them in full."""
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with _timed(timings, "load data"):
        catalogue = load_catalogue(data)
        events = load_events(data)
        if events.height == 0:
            raise UserInputError(f"{data} has no events")
    t_end = span_us(events)[1]
    metrics: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    reuse: tuple[Stage, Any] | None = None
    if cfg.holdout_days > 0:
        split = temporal_split(events, catalogue, cfg.holdout_days)
        if progress is not None:
            progress("fitting on the events before the hold-out")
        earlier = fit_models(
            catalogue, split.train, split.end_us, cfg, timings, tag="evaluation", similar=False
        )
        if progress is not None:
            progress("evaluating on the hold-out")
        t0 = time.perf_counter()
        metrics = score_split(split, catalogue, earlier.bundle, max_users=eval_users, seed=0)
        timings["evaluation: scoring"] = time.perf_counter() - t0
        evaluation = {
            "protocol": "temporal",
            "cutoff_us": split.end_us,
            "label_cutoff_us": earlier.label_cutoff_us,
            "users": metrics["_meta"]["users"],
            "metrics": headline(metrics),
        }
        reuse = (earlier.stage, earlier.tables)  # stage A of the served fit, if it ends there
        del earlier
    if progress is not None:
        progress("fitting the served models on every event")
    served = fit_models(catalogue, events, t_end, cfg, timings, tag="served", reuse=reuse)
    del reuse
    with _timed(timings, "write artifacts"):
        out = Path(out)
        bundle, model = served.bundle, served.model
        als = bundle.als
        index = build_index(als.item_factors, als.mask)
        _check_index(index, als)  # before anything is written
        entries = bundle.save(out)
        # beside the components: exports and reports that no Bundle holds (see recommndr/bundle.py)
        (out / "retrieval.onnx").write_bytes(index)
        (out / "retrieval_int8.onnx").unlink(missing_ok=True)  # written by earlier versions
        model.save_model(str(out / "ranker.txt"))
        write_table(
            conform(read_table(data, "products"), "products"), out, "products"
        )  # the storefront's catalogue
        importance = dict(zip(FEATURES, model.feature_importance("gain").tolist(), strict=True))
        (out / "feature_importance.json").write_text(json.dumps(importance, indent=2) + "\n")
    with _timed(timings, "monitoring reference"):
        # what the served bundle serves the latest days' shoppers, and those days' events
        reference = build_reference(bundle, catalogue, events_with_price(data), t_end,
                                    max(cfg.holdout_days, 7), seed=cfg.seed)  # fmt: skip
        reference.save(out / REFERENCE_FILE)
    with _timed(timings, "write artifacts"):
        (out / "timings.json").write_text(
            json.dumps({"seconds": timings, "peak_rss_gb_after": PEAK_RSS}, indent=2) + "\n"
        )
        manifest = write_manifest(
            out,
            {
                **entries,
                "data": {"path": str(data), "sha256": dataset_hash(data), "events": events.height},
                "cutoff_us": t_end,  # the served models saw every event before this
                "label_cutoff_us": served.label_cutoff_us,
                "end_us": t_end,
                "evaluation": evaluation,
                "ranker": {"rows": served.rows, "users": served.users, "onnx_parity": served.parity},
                "index": {"float32": "retrieval.onnx"},
            },
        )
    timings["total"] = time.perf_counter() - t_start
    return TrainResult(out, manifest, timings, served.rows, served.parity, metrics)


def _check_index(index: bytes, als: ALSRetriever) -> None:
    """The ONNX index returns what numpy returns for a few users (fails loudly otherwise)."""
    from recommndr.ranking.ranker import ExportError

    users = als.user_factors[: min(8, als.user_factors.shape[0])]
    if users.shape[0] == 0:
        return
    k = min(50, int(als.item_known.sum()))
    scores, items = OnnxIndex(index).search(users, k)
    ref_top = -np.sort(-als.scores(users), axis=1)[:, :k]
    if not np.allclose(ref_top, scores, rtol=1e-4, atol=1e-4):
        raise ExportError("the ONNX retrieval index disagrees with the ALS factors")
    del items
