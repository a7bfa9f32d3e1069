"""What one ``OnlineFeatures.record`` call (the atomic fold of ``/events`` into the online store)
costs per backend: p50 / p99 of single-event calls for random users and of 10-event, 5-user
batches, one process; then two spawned processes recording for one user at once (events/s, and
whether any update was lost).

    .venv/bin/python benchmarks/bench_online_record.py [--n 3000] [--redis-url URL]

Without ``--redis-url`` it starts Debian's redis-server on a free port (skipped if missing).
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recommndr.features.online import OnlineFeatures, OnlineStore, open_online_store

Spec = tuple[str, Path, str]  # kind, SQLite path, Redis URL
HOT = 10**12  # a user none of the random ones collides with


def store_of(spec: Spec) -> OnlineStore:
    store = open_online_store(spec[0], spec[1], spec[2], timeout_s=5.0)
    assert store is not None
    return store


def record_many(spec: Spec, user: int, worker: int, n: int, start: Any) -> None:
    """A spawned API worker: ``n`` single-event ``record`` calls for ``user``."""
    online = OnlineFeatures(store_of(spec), cooldown_s=0)
    start.wait(timeout=120)
    for j in range(n):
        online.record([(user, worker * 1_000_000 + j, "view", j)])
    online.close()


def stats(name: str, times: list[float], per: int = 1) -> None:
    a = np.array(times) * 1e3
    print(f"{name:<44} p50 {np.median(a):7.3f} ms   p99 {np.percentile(a, 99):7.3f} ms"
          + (f"   ({np.median(a) / per * 1e3:.0f} µs per event)" if per > 1 else ""))  # fmt: skip


def timed(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for k in range(n):
        t0 = time.perf_counter()
        fn(k)
        out.append(time.perf_counter() - t0)
    return out


def bench(spec: Spec, n: int) -> None:
    kind = spec[0]
    online = OnlineFeatures(store_of(spec))
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 10_000, n), rng.integers(0, 100_000, n)
    ok = timed(lambda k: online.record([(int(users[k]), int(items[k]), "view", k)]), n)
    stats(f"{kind}: record(), 1 event", ok)
    batch = timed(
        lambda k: online.record([(int(users[(5 * k + j // 2) % n]), int(items[j]), "view", k)
                                 for j in range(10)]),
        n // 10,
    )  # fmt: skip
    stats(f"{kind}: record(), 10 events / 5 users", batch, per=10)
    one = timed(lambda k: online.record([(HOT - 1, int(items[k]), "view", k)]), n)
    stats(f"{kind}: record(), 1 event, one user, 1 process", one)
    online.close()

    ctx = multiprocessing.get_context("spawn")
    start, per = ctx.Barrier(3), n // 2
    procs = [ctx.Process(target=record_many, args=(spec, HOT, w, per, start)) for w in range(2)]
    for p in procs:
        p.start()
    start.wait(timeout=120)
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    took = time.perf_counter() - t0
    check = store_of(spec)
    rec = check.read(HOT)
    check.close()
    got = rec.events if rec else 0
    print(f"{kind}: 2 processes x {per} events for one user: {2 * per / took:,.0f} events/s, "
          f"{2 * per - got} lost")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--redis-url", default=None)
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp())
    bench(("sqlite", scratch / "online.db", ""), args.n)
    proc = None
    url = args.redis_url
    if url is None and (exe := shutil.which("redis-server")):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(scratch)], stdout=subprocess.DEVNULL)  # fmt: skip
        time.sleep(0.5)
        url = f"redis://127.0.0.1:{port}/0"
    try:
        if url is not None:
            bench(("redis", scratch / "unused.db", url), args.n)
        else:
            print("redis: skipped (no redis-server and no --redis-url)")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
