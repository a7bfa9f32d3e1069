"""Training at full scale: each stage's wall time and memory, ALS against a bare ``implicit`` fit,
ranker scoring in ONNX Runtime against LightGBM, and the retrieval index's latency and recall.

    .venv/bin/python benchmarks/bench_train.py [--data DIR] [--artifacts DIR] [--repeats 3]

Without --data it generates the full synthetic dataset (seed 42) into a temporary folder. It runs
`recommndr train` once (timings per stage and peak memory from the run), then the micro-benchmarks
on the artifacts it wrote. Goals: whole train <= 10 min and <= 8 GB; ALS ratio <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
EXE = str(Path(sys.executable).parent / "recommndr")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def run_train(data: Path, out: Path) -> None:
    t0 = time.perf_counter()
    proc = subprocess.Popen([EXE, "train", "--data", str(data), "--out", str(out), "--no-track"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"train failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    t = json.loads((out / "timings.json").read_text())
    print("## recommndr train (one run)")
    print(f"{'stage':52s} {'seconds':>8s} {'peak GB so far':>15s}")
    for stage, sec in t["seconds"].items():
        print(f"{stage:52s} {sec:8.1f} {t['peak_rss_gb_after'].get(stage, float('nan')):15.2f}")
    peak = usage.ru_maxrss / 1024**2
    ok = wall <= 600 and peak <= 8
    print(
        f"{'whole command (incl. imports, evaluation)':52s} {wall:8.1f} {peak:15.2f}  goal <= 600 s, <= 8 GB: {'ok' if ok else 'MISSED'}"
    )


def bench_als(data: Path, repeats: int) -> None:
    from implicit.als import AlternatingLeastSquares

    from recommndr.data.interactions import US_PER_DAY, build_interactions, load_catalogue, load_events
    from recommndr.params import TrainConfig
    from recommndr.retrieval.als import confidence_matrix, fit_als_matrix

    cfg = TrainConfig()
    catalogue, events = load_catalogue(data), load_events(data)
    cut = int(events["ts_us"].max()) + 1 - cfg.holdout_days * US_PER_DAY
    inter = build_interactions(catalogue, events, cut)
    t0 = time.perf_counter()
    conf = confidence_matrix(inter, cfg.weights, cfg.als)
    build = time.perf_counter() - t0
    ours, bare = [], []
    for r in range(repeats):
        for which in ("ours", "bare") if r % 2 == 0 else ("bare", "ours"):  # alternate the order
            t0 = time.perf_counter()
            if which == "ours":
                fit_als_matrix(conf, cfg.als, cfg.seed)
                ours.append(time.perf_counter() - t0)
            else:
                m = AlternatingLeastSquares(factors=cfg.als.factors, regularization=cfg.als.regularization,
                                            iterations=cfg.als.iterations, random_state=cfg.seed)  # fmt: skip
                m.fit(conf, show_progress=False)
                bare.append(time.perf_counter() - t0)
    mo, mb = statistics.median(ours), statistics.median(bare)
    print(f"\n## ALS fit ({inter.n_users:,} users x {catalogue.n_items:,} items, {conf.nnz:,} non-zeros, "
          f"{cfg.als.factors} factors, {cfg.als.iterations} iterations; median of {repeats}, order alternated)")  # fmt: skip
    print(f"confidence matrix (event weights, decay, log1p) built once in {build:.1f} s")
    print(f"recommndr fit_als_matrix {mo:6.1f} s; bare implicit fit on the same matrix {mb:6.1f} s; "
          f"ratio {mo / mb:.2f} (goal <= 1.1: {'ok' if mo / mb <= 1.1 else 'MISSED'})")  # fmt: skip


def bench_ranker(artifacts: Path, n_iter: int) -> None:
    import lightgbm as lgb

    from recommndr.loading import load_bundle
    from recommndr.ranking.candidates import queries_for
    from recommndr.ranking.ranker import OnnxRanker
    from recommndr.ranking.two_stage import candidate_features

    b = load_bundle(artifacts)
    rng = np.random.default_rng(0)
    users = rng.choice(b.user_ids.shape[0], 50, replace=False)
    qs = queries_for(users.astype(np.int64), b.recent_indptr, b.recent_items)
    gen = b.candidate_generator()
    X = candidate_features(b.features, qs, gen.generate(qs))
    onnx = OnnxRanker((artifacts / "ranker.onnx").read_bytes(), threads=1)
    booster = lgb.Booster(model_file=str(artifacts / "ranker.txt"))
    print(f"\n## ranker scoring, one thread ({booster.num_trees()} trees); ms, {n_iter} calls each")
    print(
        f"{'rows':>5s} {'ONNX p50':>9s} {'ONNX p99':>9s} {'LightGBM p50':>13s} {'LightGBM p99':>13s} {'speed-up':>9s}"
    )
    for n in (200, 500):
        rows = X[rng.choice(X.shape[0], n, replace=X.shape[0] < n)]
        o, g = [], []
        for _ in range(n_iter):
            t0 = time.perf_counter()
            onnx.score(rows)
            o.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            booster.predict(rows, num_threads=1)
            g.append((time.perf_counter() - t0) * 1e3)
        print(
            f"{n:5d} {pct(o, 50):9.2f} {pct(o, 99):9.2f} {pct(g, 50):13.2f} {pct(g, 99):13.2f} {pct(g, 50) / pct(o, 50):8.1f}x"
        )


def int8_index(item_factors: np.ndarray, mask: np.ndarray) -> bytes:
    """The int8 ONNX index the API served before the norm-bounded one (kept here for comparison):
    items quantised per row, the user vector by DynamicQuantizeLinear, MatMulInteger, rescaled,
    masked, TopK."""
    from onnx import TensorProto, helper, numpy_helper

    from recommndr.retrieval.index import _model

    n, f = item_factors.shape
    scale = np.maximum(np.abs(item_factors).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.round(item_factors / scale[:, None]), -127, 127).astype(np.int8)
    return _model(
        [
            helper.make_node("DynamicQuantizeLinear", ["user"], ["uq", "us", "uz"]),
            helper.make_node("MatMulInteger", ["uq", "items_q_t", "uz", "izero"], ["acc"]),
            helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["accf", "item_scale"], ["s1"]),
            helper.make_node("Mul", ["s1", "us"], ["raw"]),
            helper.make_node("Add", ["raw", "mask"], ["masked"]),
        ],
        "int8",
        f,
        [
            numpy_helper.from_array(np.ascontiguousarray(q.T), "items_q_t"),
            numpy_helper.from_array(np.zeros(n, dtype=np.int8), "izero"),
            numpy_helper.from_array(scale.astype(np.float32).reshape(1, n), "item_scale"),
            numpy_helper.from_array(mask.astype(np.float32).reshape(1, n), "mask"),
        ],
    )


def bench_index(artifacts: Path, n_iter: int) -> None:
    from recommndr.loading import load_bundle
    from recommndr.retrieval.index import NormBoundIndex, OnnxIndex

    b = load_bundle(artifacts)
    als = b.als
    f32 = OnnxIndex((artifacts / "retrieval.onnx").read_bytes(), threads=1)
    q8 = OnnxIndex(int8_index(als.item_factors, als.mask), threads=1)
    bound = NormBoundIndex(als.item_factors, als.item_known)
    rng = np.random.default_rng(1)
    users = als.user_factors[rng.choice(als.user_factors.shape[0], n_iter, replace=False)]
    scores = als.scores(users)
    exact = np.argsort(-scores, axis=1)[:, :200]
    # the fewest products any exact method bounded by |u||v| must read: those whose bound reaches
    # the 200th best score
    norms = np.linalg.norm(als.item_factors[als.item_known], axis=1)
    kth = -np.partition(-scores, 199, axis=1)[:, 199]
    must = (norms[None, :] >= (kth / np.linalg.norm(users, axis=1))[:, None]).sum(axis=1)

    def int8_rescored(u: np.ndarray) -> np.ndarray:
        cand = q8.search(u, 300)[1][0]  # a 1.5x shortlist re-scored in float32
        return cand[np.argsort(-(als.item_factors[cand] @ u[0]))[:200]]

    print(f"\n## retrieval top-200 over {als.item_factors.shape[0]:,} x {als.item_factors.shape[1]} factors "
          f"({int(als.item_known.sum()):,} known), one thread, {n_iter} single-user queries")  # fmt: skip
    print(f"{'index':44s} {'p50 ms':>7s} {'p99 ms':>7s} {'recall@200':>11s}")
    variants = (
        ("ONNX MatMul+TopK float32 (registered)", lambda u: f32.search(u, 200)[1][0]),
        ("ONNX int8 + 1.5x shortlist re-scored", int8_rescored),
        ("norm-bounded exact (served)", lambda u: bound.search_one(u[0], 200)[1]),
    )
    for name, fn in variants:
        lat, rec = [], []
        for j in range(n_iter):
            t0 = time.perf_counter()
            items = fn(users[j : j + 1])
            lat.append((time.perf_counter() - t0) * 1e3)
            rec.append(np.isin(items, exact[j]).mean())
        print(f"{name:44s} {pct(lat, 50):7.2f} {pct(lat, 99):7.2f} {float(np.mean(rec)):11.4f}")
    print(f"products the norm bound must read: median {np.median(must):,.0f}, p99 {pct(must, 99):,.0f} "
          f"of {int(als.item_known.sum()):,}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--artifacts", type=Path, default=Path("/tmp/recommndr-bench-artifacts"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-train", action="store_true", help="reuse --artifacts")
    ap.add_argument("--only", choices=["als", "ranker", "index"], help="run one micro-benchmark")
    a = ap.parse_args()
    data = a.data
    if data is None:
        data = Path("/tmp/recommndr-bench-full")
        if not (data / "events.parquet").exists():
            subprocess.run([EXE, "data", "generate", "--scale", "full", "--seed", "42", "--out", str(data)],
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    print(f"# bench_train: {os.cpu_count()} cores, data {data}")
    if not a.skip_train and a.only is None:
        run_train(data, a.artifacts)
    if a.only in (None, "als"):
        bench_als(data, a.repeats)
    if a.only in (None, "ranker"):
        bench_ranker(a.artifacts, 300)
    if a.only in (None, "index"):
        bench_index(a.artifacts, 300)


if __name__ == "__main__":
    main()
