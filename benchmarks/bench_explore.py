"""What exploration costs and what it finds: two_stage fit before the hold-out (temporal protocol,
as ``train`` evaluates), scored with each exploration share — NDCG@10, recall@50, and recall@50
of the cold products (no event before the cut-off; over the users who touched one in the
hold-out) — next to the share 0 row.

    .venv/bin/python benchmarks/bench_explore.py --data /work/data/small [--params params.yaml]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--shares", default="0,0.05,0.1,0.2,0.3")
    ap.add_argument("--users", type=int, default=20_000)
    a = ap.parse_args()

    from recommndr.data.interactions import load_catalogue, load_events
    from recommndr.evaluation.evaluate import score_split
    from recommndr.evaluation.protocols import temporal_split
    from recommndr.params import load_train_config
    from recommndr.training.pipeline import fit_models

    cfg = load_train_config(a.params)
    catalogue = load_catalogue(a.data)
    split = temporal_split(load_events(a.data), catalogue, cfg.holdout_days)
    fitted = fit_models(catalogue, split.train, split.end_us, cfg, {})
    cold = int((~fitted.bundle.als.item_known).sum())
    print(f"# {a.data}: {cold:,} of {catalogue.n_items:,} products have no event before the cut-off")
    print(
        f"{'share':>5} {'ndcg@10':>8} {'vs 0':>7} {'recall@50':>9} {'cold recall@50':>14} {'cold users':>10} {'s':>5}"
    )
    base = None
    for share in [float(x) for x in a.shares.split(",")]:
        t0 = time.perf_counter()
        r = score_split(split, catalogue, fitted.bundle, a.users, models=("two_stage",), explore=share)[
            "two_stage"
        ]
        base = base if base is not None else r["ndcg@10"]
        print(f"{share:5.2f} {r['ndcg@10']:8.4f} {100 * (r['ndcg@10'] / base - 1):+6.1f}% {r['recall@50']:9.4f} "
              f"{r['cold_items'].get('recall@50', 0.0):14.4f} {r['cold_items']['n_users']:10d} "
              f"{time.perf_counter() - t0:5.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
