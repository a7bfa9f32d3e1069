"""The API under load on 127.0.0.1: p50 / p99 and requests per second at concurrency 1, 8 and 32
for /recommendations, /similar_items, /frequently_bought_together and /health (the floor), with
random real user and item ids; start-up to ready; the server's memory.

    .venv/bin/python benchmarks/bench_serve.py --artifacts ARTIFACTS [--seconds 5] [--repeat 3] [--workers 1]

Needs wrk (Debian package `wrk`; installed when missing and running as root). Goals (issue 4):
/recommendations p50 <= 3 ms and p99 <= 10 ms at concurrency 1; no errors and >= 5% of /health's
throughput at concurrency 8 and 32; ready <= 10 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from api_ready import wait_ready

EXE = str(Path(sys.executable).parent / "recommndr")
LUA = """
math.randomseed(%(seed)d)
local ids = {%(ids)s}
request = function()
  return wrk.format("GET", "%(prefix)s" .. ids[math.random(#ids)] .. "%(suffix)s")
end
"""


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("wrk is needed: apt-get install wrk")


def to_ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    if not m:
        return float("nan")
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def run_wrk(wrk: str, url: str, script: Path | None, conns: int, seconds: int) -> dict[str, float]:
    args = [wrk, f"-t{min(conns, 2)}", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", str(script)]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(
        int(x) for x in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout) (\d+)", out)
    )
    return {
        "p50": to_ms(lat.get("50", "nan")),
        "p99": to_ms(lat.get("99", "nan")),
        "rps": rps,
        "errors": errors,
    }


def memory_gb(pid: int) -> float:
    """Resident memory of the server and its worker processes."""
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1024**3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, required=True)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--conns", default="1,8,32", help="concurrency levels, comma-separated")
    ap.add_argument("--workers", type=int, help="API worker processes [default: serve's, 2 on 2+ cores]")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per cell; medians are printed (this machine is noisy)"
    )
    a = ap.parse_args()
    wrk = ensure_wrk()
    with np.load(a.artifacts / "als.npz") as z:
        users = z["user_ids"]
    with np.load(a.artifacts / "catalog.npz") as z:
        items = z["item_ids"]
    with np.load(a.artifacts / "copurchase.npz") as z:
        fbt_items = items[np.flatnonzero(np.diff(z["indptr"]) > 0)]
    rng = np.random.default_rng(0)
    scratch = Path(tempfile.mkdtemp())
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", RECOMMNDR_EVENT_LOG_DIR=str(scratch / "events"),
               RECOMMNDR_ONLINE_STORE_PATH=str(scratch / "online.db"))  # fmt: skip
    t0 = time.perf_counter()
    workers = ["--workers", str(a.workers)] if a.workers else []
    server = subprocess.Popen([EXE, "serve", "--artifacts", str(a.artifacts), "--port", str(a.port), *workers], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{a.port}"
    try:
        ready = wait_ready(base, server, t0, 120, 0.05)
        rss = memory_gb(server.pid)
        from recommndr.serving.run import default_workers

        print(
            f"# bench_serve: {os.cpu_count()} cores; artifacts {a.artifacts}; {a.workers or default_workers()} worker(s); "
            f"{a.seconds} s per run, median of {a.repeat} runs per cell (the share: median of per-run ratios "
            "to the /health run just before); wrk on the same machine"
        )
        print(f"start-up to ready: {ready:.1f} s (goal <= 10 s); server memory after start: {rss:.2f} GB")
        tmp = Path(tempfile.mkdtemp())
        scripts = {}
        for name, ids, prefix, suffix in (
            ("/recommendations", rng.choice(users, 2000), "/recommendations/", "?k=10"),
            ("/similar_items", rng.choice(items, 2000), "/similar_items/", "?k=10"),
            (
                "/frequently_bought_together",
                rng.choice(fbt_items, 2000),
                "/frequently_bought_together/",
                "?k=5",
            ),
        ):
            p = tmp / f"{name.strip('/')}.lua"
            p.write_text(
                LUA
                % {"seed": 1, "ids": ",".join(str(int(i)) for i in ids), "prefix": prefix, "suffix": suffix}
            )
            scripts[name] = p
        print(
            f"{'endpoint':30s} {'conc':>4s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>9s} {'errors':>7s} {'vs /health':>10s}"
        )
        for conns in [int(c) for c in a.conns.split(",")]:
            runs: dict[str, list[dict[str, float]]] = {"/health": [], **{n: [] for n in scripts}}
            for _ in range(a.repeat):  # /health and each endpoint back to back, a.repeat times
                runs["/health"].append(run_wrk(wrk, f"{base}/health", None, conns, a.seconds))
                for name, script in scripts.items():
                    r = run_wrk(wrk, base, script, conns, a.seconds)
                    h = runs["/health"][-1]["rps"]
                    r["share"] = r["rps"] / h if h else float("nan")
                    runs[name].append(r)
            for name, rs in runs.items():
                med = {k: float(np.median([r[k] for r in rs])) for k in rs[0]}
                share = f"{med['share']:9.1%}" if "share" in med else f"{'':>10s}"
                errors = sum(r["errors"] for r in rs)
                print(f"{name:30s} {conns:4d} {med['p50']:8.2f} {med['p99']:8.2f} {med['rps']:9.0f} {errors:7.0f} {share}",
                      flush=True)  # fmt: skip
        print(f"server memory after the load: {memory_gb(server.pid):.2f} GB")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
