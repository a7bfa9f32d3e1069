"""Memory of the API as ``recommndr serve`` runs it, with 1 and then 2 worker processes: per worker
RSS, PSS and USS (unique set size: Private_Clean + Private_Dirty of /proc/PID/smaps_rollup), after
start-up and after real requests (random known users on /recommendations, random products on
/similar_items and /frequently_bought_together, /trending and /popular) have touched the hot pages;
also how much of each worker is the bundle's files mapped in place (shared between workers) and
how much of those is resident. Medians over ``--repeat`` starts; the last line is the summary.

    .venv/bin/python benchmarks/bench_memory.py --artifacts ARTIFACTS [--workers 1,2] [--requests 3000] [--repeat 3]

The server is ``python -m recommndr.cli serve`` of the ``recommndr`` package this script imports
(PYTHONPATH points the workers at the same copy). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from api_ready import wait_ready

MB = 1024.0  # smaps counts kB


def smaps_rollup(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of ``pid`` in MB."""
    d: dict[str, float] = {}
    with Path(f"/proc/{pid}/smaps_rollup").open() as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                d[parts[0].rstrip(":")] = int(parts[1]) / MB
    return {"rss": d["Rss"], "pss": d["Pss"], "uss": d["Private_Clean"] + d["Private_Dirty"]}


def mapped_files(pid: int, folder: Path) -> dict[str, tuple[float, float]]:
    """Per file of ``folder`` (the bundle, mapped in place): the size and resident part (MB) of
    its mappings."""
    out: dict[str, tuple[float, float]] = {}
    name = None
    root = str(folder.resolve()) + os.sep
    with Path(f"/proc/{pid}/smaps").open() as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):  # a mapping's header line
                path = parts[-1] if len(parts) >= 6 else ""
                name = path[len(root) :] if path.startswith(root) else None
            elif name is not None and parts[0] in ("Size:", "Rss:"):
                size, rss = out.get(name, (0.0, 0.0))
                kb = int(parts[1]) / MB
                out[name] = (size + kb, rss) if parts[0] == "Size:" else (size, rss + kb)
    return out


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def workers_of(server: int, n: int) -> list[int]:
    """The processes that hold the app: the server itself for one worker; else uvicorn's spawned
    children (not multiprocessing's resource tracker)."""
    if n == 1:
        return [server]
    found = []
    for c in children(server):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            found.append(c)
    return sorted(found)


def tree(pid: int) -> list[int]:
    out = [pid]
    for c in children(pid):
        out += tree(c)
    return out


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as r:  # a new connection each time: any worker answers
        r.read()
        return int(r.status)


@dataclass
class Run:
    ready: float  # s from launching the command until every worker is ready
    start: list[dict[str, float]]  # per worker, after start-up
    after: list[dict[str, float]]  # per worker, after the requests
    mapped: list[dict[str, tuple[float, float]]]  # per worker and file: mapped, resident (MB)
    total_pss: float  # all processes of the server (the supervisor too)
    requests: int
    seconds: float
    errors: int


def run_once(a: argparse.Namespace, n_workers: int, ids: dict[str, np.ndarray], seed: int) -> Run:
    import recommndr

    scratch = Path(tempfile.mkdtemp())
    pkg_root = str(Path(recommndr.__file__).resolve().parents[1])
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=pkg_root,
               RECOMMNDR_EVENT_LOG_DIR=str(scratch / "events"),
               RECOMMNDR_ONLINE_STORE_PATH=str(scratch / "online.db"),
               RECOMMNDR_TRAFFIC_FILE=str(scratch / "traffic.json"))  # fmt: skip
    cmd = [sys.executable, "-m", "recommndr.cli", "serve", "--artifacts", str(a.artifacts),
           "--port", str(a.port), "--workers", str(n_workers)]  # fmt: skip
    t0 = time.perf_counter()
    server = subprocess.Popen(cmd, env=env, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{a.port}"
    try:
        ready = wait_ready(base, server, t0, 180, 0.1)
        time.sleep(1.0)
        pids = workers_of(server.pid, n_workers)
        if len(pids) != n_workers:
            raise SystemExit(f"found {len(pids)} worker processes, expected {n_workers}")
        start = [smaps_rollup(p) for p in pids]
        rng = np.random.default_rng(seed)
        urls = [f"{base}/recommendations/{int(u)}?k=10" for u in rng.choice(ids["users"], a.requests)]
        urls += [f"{base}/similar_items/{int(i)}?k=10" for i in rng.choice(ids["items"], a.requests // 4)]
        urls += [
            f"{base}/frequently_bought_together/{int(i)}?k=5" for i in rng.choice(ids["fbt"], a.requests // 4)
        ]
        urls += [f"{base}/trending?k=10", f"{base}/popular?k=10"] * 25
        urls = [urls[i] for i in rng.permutation(len(urls))]
        t1 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(get, urls))
        took = time.perf_counter() - t1
        bad = sum(c != 200 for c in codes)
        after = [smaps_rollup(p) for p in pids]
        mapped = [mapped_files(p, a.artifacts) for p in pids]
        total_pss = sum(smaps_rollup(p)["pss"] for p in tree(server.pid))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    return Run(ready, start, after, mapped, total_pss, len(urls), took, bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, required=True)
    ap.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    ap.add_argument(
        "--requests",
        type=int,
        default=3000,
        help="/recommendations per run (and a quarter as many of each item endpoint)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="starts per worker count; medians are printed")
    ap.add_argument("--port", type=int, default=8766)
    a = ap.parse_args()
    with np.load(a.artifacts / "als.npz") as z:
        users = np.asarray(z["user_ids"])
    with np.load(a.artifacts / "catalog.npz") as z:
        items = np.asarray(z["item_ids"])
    with np.load(a.artifacts / "copurchase.npz") as z:
        fbt = items[np.flatnonzero(np.diff(np.asarray(z["indptr"])) > 0)]
    ids = {"users": users, "items": items, "fbt": fbt}
    bundle_mb = sum(p.stat().st_size for p in a.artifacts.iterdir() if p.is_file()) / 2**20
    print(f"# bench_memory: {os.cpu_count()} cores; artifacts {a.artifacts} ({bundle_mb:.0f} MB on disk); "
          f"{a.requests} /recommendations + {a.requests // 4} /similar_items + {a.requests // 4} "
          f"/frequently_bought_together + 50 /trending,/popular per run, 4 client threads; "
          f"median of {a.repeat} starts; MB = 2^20 bytes")  # fmt: skip
    print(f"{'workers':>7s} {'run':>3s} {'worker':>6s} {'phase':>8s} {'RSS':>7s} {'PSS':>7s} {'USS':>7s} "
          f"{'mapped':>7s} {'resident':>8s}")  # fmt: skip
    summary = []
    for n in [int(w) for w in a.workers.split(",")]:
        runs = [run_once(a, n, ids, seed) for seed in range(a.repeat)]
        for r, run in enumerate(runs):
            for w in range(n):
                for phase, m in (("start", run.start[w]), ("after", run.after[w])):
                    size, res = (
                        (sum(v) for v in zip(*run.mapped[w].values(), strict=True))
                        if run.mapped[w]
                        else (0, 0)
                    )
                    extra = f" {size:7.0f} {res:8.0f}" if phase == "after" else ""
                    print(
                        f"{n:7d} {r:3d} {w:6d} {phase:>8s} {m['rss']:7.0f} {m['pss']:7.0f} {m['uss']:7.0f}{extra}"
                    )
            print(f"{n:7d} {r:3d}   ready in {run.ready:.1f} s; {run.requests} requests in {run.seconds:.1f} s, "
                  f"{run.errors} not 200; all processes' PSS {run.total_pss:.0f} MB")  # fmt: skip

        def med(values: list[float]) -> float:
            return float(np.median(values))

        def per_worker(phase: str, key: str, runs: list[Run] = runs) -> float:
            """The median over runs of the mean over a run's workers."""
            return med([float(np.mean([m[key] for m in getattr(run, phase)])) for run in runs])

        mapped = med([float(np.mean([sum(s for s, _ in m.values()) for m in run.mapped])) for run in runs])
        resident = med([float(np.mean([sum(x for _, x in m.values()) for m in run.mapped])) for run in runs])
        files = sorted({f for run in runs for m in run.mapped for f in m})
        if files:
            print("  resident of each mapped file (MB, median over runs of the workers' mean): " + ", ".join(
                f"{f} {med([float(np.mean([m.get(f, (0.0, 0.0))[1] for m in run.mapped])) for run in runs]):.0f}"
                f"/{med([float(np.mean([m.get(f, (0.0, 0.0))[0] for m in run.mapped])) for run in runs]):.0f}"
                for f in files))  # fmt: skip
        total = med([run.total_pss for run in runs])
        rss, pss, uss = (per_worker("after", key) for key in ("rss", "pss", "uss"))
        print(f"{n} worker(s), per worker, after start: RSS {per_worker('start', 'rss'):.0f} MB, PSS "
              f"{per_worker('start', 'pss'):.0f} MB, USS {per_worker('start', 'uss'):.0f} MB; after the "
              f"requests: RSS {rss:.0f} MB, PSS {pss:.0f} MB, USS {uss:.0f} MB (bundle files mapped "
              f"{mapped:.0f} MB, {resident:.0f} MB of it resident); all processes' PSS {total:.0f} MB; "
              f"ready in {med([run.ready for run in runs]):.1f} s")  # fmt: skip
        summary.append(
            f"workers={n} rss_mb={rss:.0f} pss_mb={pss:.0f} uss_mb={uss:.0f} total_pss_mb={total:.0f}"
        )
    print("summary: " + " | ".join(summary))


if __name__ == "__main__":
    main()
