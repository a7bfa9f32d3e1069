"""Quality per millisecond of the request path's ranking stage: held-out NDCG@10 of two_stage and
the ONNX ranker's one-thread latency, for the trained ranker cut to its first N trees and for
fewer candidates — the measurement behind the serving defaults (issue 4). The bundle's parameters
are refit before the hold-out (as ``train`` does to evaluate); latency is measured on the served
bundle's real requests.

    .venv/bin/python benchmarks/bench_ranker_tradeoff.py --data data/full --artifacts artifacts/full
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--artifacts", type=Path, required=True)
    ap.add_argument("--users", type=int, default=5000, help="held-out users evaluated per setting")
    ap.add_argument("--trees", default="50,100,150,200")
    ap.add_argument("--candidates", default="200,300")
    a = ap.parse_args()

    import lightgbm as lgb

    from recommndr.data.interactions import load_catalogue, load_events
    from recommndr.evaluation.evaluate import score_split
    from recommndr.evaluation.protocols import temporal_split
    from recommndr.loading import load_bundle
    from recommndr.ranking.candidates import queries_for
    from recommndr.ranking.ranker import OnnxRanker, float32_exact, to_onnx
    from recommndr.ranking.two_stage import candidate_features
    from recommndr.training.pipeline import fit_models

    bundle = load_bundle(a.artifacts)
    catalogue = load_catalogue(a.data)
    split = temporal_split(load_events(a.data), catalogue, bundle.config.holdout_days)
    fitted = fit_models(catalogue, split.train, split.end_us, bundle.config, {})
    full = fitted.model.booster_
    users = np.random.default_rng(0).integers(0, bundle.user_ids.shape[0], 100)
    queries = queries_for(users, bundle.recent_indptr, bundle.recent_items)
    rows: dict[int, list[np.ndarray]] = {}  # real requests' feature matrices per candidate count
    for total in [int(c) for c in a.candidates.split(",")]:
        bundle.config = bundle.config.model_copy(
            update={"candidates": bundle.config.candidates.model_copy(update={"total": total})}
        )
        gen = bundle.candidate_generator()
        rows[total] = [candidate_features(bundle.features, [q], gen.generate([q])) for q in queries]
    print(f"# {a.artifacts}: ranker {full.num_trees()} trees; NDCG@10 on {a.users:,} held-out users; "
          "latency: ONNX Runtime, one thread, median over 100 real users' candidate rows x 3")  # fmt: skip
    print(
        f"{'trees':>5} {'candidates':>10} {'mean rows':>9} {'ndcg@10':>8} {'recall@50':>9} {'ranker p50 ms':>13}"
    )
    for n in [int(t) for t in a.trees.split(",")]:
        cut = lgb.Booster(model_str=full.model_to_string(num_iteration=n))
        ranker = OnnxRanker(to_onnx(float32_exact(cut)), threads=1)
        for total in [int(c) for c in a.candidates.split(",")]:
            times = []
            for X in rows[total] * 3:
                t0 = time.perf_counter()
                ranker.score(X)
                times.append(time.perf_counter() - t0)
            mean_rows = np.mean([X.shape[0] for X in rows[total]])
            ev = fitted.bundle
            ev.config = ev.config.model_copy(
                update={"candidates": ev.config.candidates.model_copy(update={"total": total})}
            )
            res = score_split(split, catalogue, ev, max_users=a.users, ranker=ranker, models=("two_stage",))
            two = res["two_stage"]
            print(f"{n:5d} {total:10d} {mean_rows:9.0f} {two['ndcg@10']:8.4f} {two['recall@50']:9.4f} "
                  f"{np.median(times) * 1e3:13.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
