"""Quality per millisecond of the request path's ranking stage: held-out NDCG@10 of two_stage and
the ONNX ranker's one-thread latency, for the trained ranker cut to its first N trees and for
fewer candidates — the measurement behind the serving defaults (issue 4).

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

    from recommndr.evaluation.evaluate import evaluate
    from recommndr.loading import load_bundle
    from recommndr.ranking.candidates import queries_for
    from recommndr.ranking.ranker import OnnxRanker, float32_exact, to_onnx
    from recommndr.ranking.two_stage import candidate_features

    full = lgb.Booster(model_file=str(a.artifacts / "ranker.txt"))
    bundle = load_bundle(a.artifacts)
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
            res = evaluate(a.data, a.artifacts, max_users=a.users, ranker=ranker, candidates_total=total)
            two = res["two_stage"]
            print(f"{n:5d} {total:10d} {mean_rows:9.0f} {two['ndcg@10']:8.4f} {two['recall@50']:9.4f} "
                  f"{np.median(times) * 1e3:13.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
