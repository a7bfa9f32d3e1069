"""``recommndr train``: fit every model and write the artifacts the API needs.

Time is split so that nothing from the future leaks: the last ``holdout_days`` are held out for
``recommndr evaluate``; the ``label_days`` before them label the ranker. Stage A fits retrieval on
events before the label window and learns the ranker on its candidates (labels: purchase >
add to cart > view in the window). Stage B refits retrieval, popularity, co-purchase, similar
items and the feature tables on everything before the hold-out; these, with the ranker, are the
artifacts.
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
from recommndr.params import TrainConfig
from recommndr.ranking.candidates import CandidateGenerator, Exclusions, queries_for, recent_items
from recommndr.ranking.features import FEATURES, build_feature_tables
from recommndr.ranking.ranker import OnnxRanker, TrainingSet, check_parity, to_onnx, train_ranker
from recommndr.ranking.two_stage import candidate_features
from recommndr.registry.artifacts import dataset_hash, write_manifest
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.index import OnnxIndex, build_index
from recommndr.retrieval.popularity import PopularityRetriever
from recommndr.similarity.copurchase import CoPurchaseRetriever, fit_copurchase
from recommndr.similarity.similar import SimilarItems, similar_table

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out: Path
    manifest: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)
    ranker_rows: int = 0
    parity: float = 0.0


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


def fit_stage(
    catalogue: Catalogue,
    events: pl.DataFrame,
    cutoff: int,
    cfg: TrainConfig,
    timings: dict[str, float],
    tag: str,
) -> tuple[Stage, Any]:
    with _timed(timings, f"{tag}: interactions"):
        inter = build_interactions(catalogue, events, cutoff)
        if inter.n_users == 0:
            raise UserInputError("no events before the training cut-off: the dataset is too short")
    with _timed(timings, f"{tag}: ALS"):
        als = ALSRetriever.fit(inter, cfg.weights, cfg.als, cfg.seed)
    with _timed(timings, f"{tag}: popularity, co-purchase, exclusions"):
        pop = PopularityRetriever.fit(inter, cfg.weights, cfg.popularity)
        cop = fit_copurchase(inter, cfg.copurchase)
        excl = Exclusions.fit(inter)
        recent = recent_items(inter)
    gen = CandidateGenerator(
        als, pop, CoPurchaseRetriever(cop, cfg.copurchase.recent_items), excl, cfg.candidates
    )
    with _timed(timings, f"{tag}: feature tables"):
        tables = build_feature_tables(inter, pop.pop, excl.repeatable_l3)
    return Stage(inter, als, pop, gen, recent), (cop, excl, tables)


def ranker_training_set(stage: Stage, tables: Any, labels: pl.DataFrame, cfg: TrainConfig) -> TrainingSet:
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
    return TrainingSet(np.concatenate(Xs), np.concatenate(ys), np.array(groups, dtype=np.int64))


def train(
    data: Path, out: Path, cfg: TrainConfig, progress: Callable[[str], None] | None = None
) -> TrainResult:
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with _timed(timings, "load data"):
        catalogue = load_catalogue(data)
        events = load_events(data)
        if events.height == 0:
            raise UserInputError(f"{data} has no events")
    ts_us = events["ts_us"].to_numpy()
    t_start_us, t_end = int(ts_us.min()), int(ts_us.max()) + 1
    holdout_cut = t_end - cfg.holdout_days * US_PER_DAY
    label_cut = holdout_cut - cfg.label_days * US_PER_DAY
    if label_cut <= t_start_us:
        raise UserInputError(
            f"the data spans {(t_end - t_start_us) / US_PER_DAY:.0f} days: too short for "
            f"{cfg.label_days} label days and {cfg.holdout_days} hold-out days"
        )

    stage_a, (_, _, tables_a) = fit_stage(catalogue, events, label_cut, cfg, timings, "A (ranker data)")
    window = events.filter((pl.col("ts_us") >= label_cut) & (pl.col("ts_us") < holdout_cut))
    window = window.with_columns(pl.Series("item", catalogue.index_of(window["item_id"].to_numpy()))).filter(
        pl.col("item") >= 0
    )
    labels = window.group_by("user_id", "item").agg((pl.col("etype").max() + 1).alias("gain"))
    with _timed(timings, "ranker: candidates and features"):
        ts = ranker_training_set(stage_a, tables_a, labels, cfg)
    with _timed(timings, "ranker: LightGBM"):
        model = train_ranker(ts, cfg.ranker, cfg.seed)
    with _timed(timings, "ranker: ONNX export and parity"):
        ranker_onnx = to_onnx(model)
        sample = ts.X[
            np.random.default_rng(cfg.seed).choice(ts.X.shape[0], min(20_000, ts.X.shape[0]), replace=False)
        ]
        parity = check_parity(model, ranker_onnx, sample)
    del stage_a, tables_a

    stage_b, (cop, excl, tables_b) = fit_stage(catalogue, events, holdout_cut, cfg, timings, "B (served)")
    with _timed(timings, "similar items"):
        nbr, sim = similar_table(stage_b.als.item_factors, stage_b.als.item_known, cfg.similar_items)
    with _timed(timings, "write artifacts"):
        out = Path(out)
        als = stage_b.als
        index = build_index(als.item_factors, als.mask)
        _check_index(index, als)  # before anything is written
        pop = stage_b.popularity
        bundle = Bundle(
            config=cfg,
            catalogue=catalogue,
            user_ids=stage_b.inter.user_ids,
            recent_indptr=stage_b.recent[0],
            recent_items=stage_b.recent[1],
            als=als,
            popularity=pop,
            copurchase=cop,
            exclusions=excl,
            features=tables_b,
            ranker=OnnxRanker(ranker_onnx),
            similar=SimilarItems(catalogue, nbr, sim, als.item_known, pop.pop),
        )
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
        (out / "timings.json").write_text(
            json.dumps({"seconds": timings, "peak_rss_gb_after": PEAK_RSS}, indent=2) + "\n"
        )
        manifest = write_manifest(
            out,
            {
                **entries,
                "data": {"path": str(data), "sha256": dataset_hash(data), "events": events.height},
                "cutoff_us": holdout_cut,
                "label_cutoff_us": label_cut,
                "end_us": t_end,
                "ranker": {
                    "rows": int(ts.X.shape[0]),
                    "users": int(ts.group.shape[0]),
                    "onnx_parity": parity,
                },
                "index": {"float32": "retrieval.onnx"},
            },
        )
    timings["total"] = time.perf_counter() - t_start
    return TrainResult(out, manifest, timings, int(ts.X.shape[0]), parity)


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
