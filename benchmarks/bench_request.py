"""Where one /recommendations request's time goes, in-process, one thread: the online-store read,
candidates, features, the ONNX ranker, the ranking core (``rank``: all of these for one query,
the path evaluation measures too), the whole ``recommend`` (with the reasons), and the whole request
through the ASGI app (routing, validation, JSON), also with the filters ``exclude`` and
``exclude_items`` — medians and p99 over random real users. With ``--live N``, product windows
for N random products are written where the streaming job writes them (the online store's SQLite
file), so ``recommend()`` and the app serve the live path (the hour's products join the popularity
candidates; the app's snapshot is live).

    .venv/bin/python benchmarks/bench_request.py --artifacts ARTIFACTS [--n 2000] [--live 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np


def stats(name: str, times: list[float]) -> None:
    a = np.array(times) * 1e3
    print(f"{name:<34} p50 {np.median(a):7.3f} ms   p99 {np.percentile(a, 99):7.3f} ms")


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--artifacts", type=Path, required=True)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--live", type=int, default=0, help="products with live windows (0: batch, no stream)")
    args = ap.parse_args()

    from recommndr.features.online import OnlineFeatures, SqliteOnlineStore, UserRealtime
    from recommndr.ranking.features import compute_features
    from recommndr.serving.model import ServingModel

    m = ServingModel.load(args.artifacts)
    b = m.bundle
    assert b is not None and m.generator is not None
    rng = np.random.default_rng(0)
    users = rng.choice(b.user_ids, size=args.n)
    online = OnlineFeatures(SqliteOnlineStore(Path(tempfile.mkdtemp()) / "f.db"))
    online.record([(int(u), int(m.catalogue.item_ids[i]), "view", 1) for u, i in zip(
        users[: args.n // 2], rng.integers(0, m.catalogue.item_ids.shape[0], args.n // 2), strict=True)])  # fmt: skip
    it = iter(np.tile(users, 20))
    print(f"{args.artifacts}: {b.catalogue.n_items:,} products, {b.user_ids.shape[0]:,} users, "
          f"{b.config.candidates.total} candidates, ranker {b.config.ranker.n_estimators} trees x "
          f"{b.config.ranker.num_leaves} leaves")  # fmt: skip
    stats("online store read (SQLite)", timed(lambda: online.get(int(next(it))), args.n))
    queries = [m._query(b, int(u), UserRealtime()) for u in users[:300]]
    qi = iter(queries * 50)
    cands: list = []
    stats("candidates (index + co-purchase + pop)", timed(lambda: cands.append(m.generator.generate([next(qi)])[0]), 300))  # type: ignore[union-attr]  # fmt: skip
    feats: list = []

    def features() -> None:
        q, c = queries[len(feats) % 300], cands[len(feats) % 300]
        user = np.full(c.items.shape[0], q.user, dtype=np.int64)
        feats.append(compute_features(b.features, user, c.items, c.als_score, c.als_rank, c.cop_score,
                                      c.pop_score, c.sources))  # fmt: skip

    stats("features", timed(features, 300))
    print(f"{'':<34} ({np.mean([c.items.shape[0] for c in cands]):.0f} candidates on average)")
    fi = iter(feats * 10)
    stats("ranker (ONNX, one thread)", timed(lambda: b.ranker.score(next(fi)), 1000))
    stats("retrieval index alone", timed(lambda: b.als.retrieve([next(qi)], b.config.candidates.als), 300))
    assert m.ranking is not None
    stats("rank() one query (ranking core)", timed(lambda: m.ranking.rank([next(qi)], 10), 300))  # type: ignore[union-attr]
    stream = None
    if args.live:
        from recommndr.config import get_settings
        from recommndr.serving.metrics import ApiMetrics
        from recommndr.serving.stream import StreamFeed
        from recommndr.streaming.windows import SqliteWindowStore, Tile, tile_end_us

        windows = SqliteWindowStore(get_settings().online_store_path)
        picks = rng.choice(m.catalogue.item_ids, size=args.live, replace=False)
        counts = rng.integers(3, 100, args.live)

        def heartbeat() -> None:  # the job's: the snapshot stays live while it runs
            end = tile_end_us(time.time_ns() // 1000)
            windows.write_tiles([Tile(int(i), end, int(v), 0, 0) for i, v in zip(picks, counts, strict=True)])

        heartbeat()
        stream = StreamFeed(get_settings(), ApiMetrics()).refresh()
        assert stream.live, stream.why
        print(f"live windows: {stream.item_ids.shape[0]} products in the snapshot")
    stats("recommend() whole", timed(lambda: m.recommend(int(next(it)), 10, stream=stream), args.n))
    stats("recommend() cold start", timed(lambda: m.recommend(-1, 10, stream=stream), 300))

    from recommndr.serving.app import create_app

    async def through_asgi(query: bytes) -> list[float]:
        if args.live:
            heartbeat()
        app = create_app(args.artifacts, Path(tempfile.mkdtemp()))
        times = []
        async with app.router.lifespan_context(app):
            assert app.state.recommndr.stream.snapshot.live == bool(args.live)
            for u in users[: args.n]:
                scope = {"type": "http", "method": "GET", "path": f"/recommendations/{int(u)}",
                         "raw_path": f"/recommendations/{int(u)}".encode(), "query_string": query,
                         "headers": [], "http_version": "1.1", "scheme": "http", "root_path": "",
                         "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}  # fmt: skip

                async def receive() -> dict:
                    return {"type": "http.request", "body": b"", "more_body": False}

                async def send(message: dict) -> None:
                    pass

                t0 = time.perf_counter()
                await app(scope, receive, send)
                times.append(time.perf_counter() - t0)
        return times

    stats("request through the ASGI app", asyncio.run(through_asgi(b"k=10")))
    # the filters of issue 11: every state the shopper has (the model's and the online store's)
    # and five product ids (the most popular, so the list changes) left out
    ids = ",".join(str(int(m.catalogue.item_ids[i])) for i in m.popular(5)[0])
    filtered = f"k=10&exclude=purchased,carted,viewed&exclude_items={ids}".encode()
    stats("  with exclude= and exclude_items=", asyncio.run(through_asgi(filtered)))


if __name__ == "__main__":
    main()
