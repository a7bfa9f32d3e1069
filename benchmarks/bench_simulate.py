"""The traffic simulator against a local API (`recommndr serve` on 127.0.0.1): visits per second it
sustains, stepping the rate up, and what each visit costs the simulator itself.

    .venv/bin/python benchmarks/bench_simulate.py [--data DIR --artifacts DIR] [--rates 25,50,100,200,400]
        [--seconds 5] [--workers 1] [--max-in-flight 64]

Without --data and --artifacts it generates the tiny shop (seed 7) and trains on it in a
temporary folder (~15 s). Per rate: the visits started per second, those dropped (the bound on
visits in flight was full: the API fell behind) and started late (the simulator's own loop fell
behind), errors, /recommendations p50 / p99 as the shoppers saw it, events posted per second, and
the simulator's CPU per visit (this process's CPU time; the API runs in its own processes). A rate
is sustained when at least 98 % of its visits start, none is dropped and no request fails. The
simulator and the API share this machine's cores: the ceiling is the pair's, and
``sim_ceiling_visits_per_s`` (1000 / CPU ms per visit) is what the simulator alone would reach on
a core of its own.

Last line: ``sustained_visits_per_s=… p99_ms=… sim_cpu_ms_per_visit=… sim_ceiling_visits_per_s=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from api_ready import wait_ready

EXE = str(Path(sys.executable).parent / "recommndr")


def prepare(scratch: Path) -> tuple[Path, Path]:
    from recommndr.data.synthetic import generate
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import train

    data, art = scratch / "tiny", scratch / "art"
    t0 = time.perf_counter()
    generate("tiny", data, seed=7)
    train(data, art, TrainConfig.model_validate({"ranker": {"n_estimators": 60}}))
    print(f"# generated and trained the tiny shop in {time.perf_counter() - t0:.0f} s", flush=True)
    return data, art


def step(api: str, data: Path, rate: float, seconds: float, max_in_flight: int) -> dict[str, Any]:
    from recommndr.streaming.simulate import TrafficSimulator

    sim = TrafficSimulator(api, data, rate, seed=int(rate), max_in_flight=max_in_flight)
    cpu0 = time.process_time()
    counts = asyncio.run(sim.run(seconds))
    cpu = time.process_time() - cpu0
    v = counts["visits"]
    errors = sum(n for kinds in counts["errors"].values() for n in kinds.values())
    events = sum(c["events_accepted"] for c in counts["variants"].values())
    return {
        "rate": rate,
        "achieved": counts["achieved_rate"],
        "started": v["started"],
        "planned": v["planned"],
        "dropped": v["dropped"],
        "late": v["late"],
        "errors": errors,
        "p50": counts["latency_ms"]["p50"] or float("nan"),
        "p99": counts["latency_ms"]["p99"] or float("nan"),
        "events_per_s": events / counts["seconds"] if counts["seconds"] else 0.0,
        "cpu_ms_per_visit": 1000.0 * cpu / max(v["started"], 1),
        "sustained": v["started"] >= 0.98 * v["planned"] and v["dropped"] == 0 and errors == 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, help="a synthetic shop (with its ground truth)")
    ap.add_argument("--artifacts", type=Path, help="a bundle trained on --data")
    ap.add_argument("--rates", default="25,50,100,200,400", help="visits per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=5.0, help="per rate")
    ap.add_argument("--workers", type=int, default=1, help="API worker processes")
    ap.add_argument("--max-in-flight", type=int, default=64)
    ap.add_argument("--port", type=int, default=8766)
    a = ap.parse_args()
    if (a.data is None) != (a.artifacts is None):
        raise SystemExit("give both --data and --artifacts, or neither")
    scratch = Path(tempfile.mkdtemp(prefix="bench_simulate-"))
    data, art = (a.data, a.artifacts) if a.data else prepare(scratch)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOMMNDR_")}
    env.update(OPENBLAS_NUM_THREADS="1", RECOMMNDR_EVENT_LOG_DIR=str(scratch / "events"),
               RECOMMNDR_ONLINE_STORE_PATH=str(scratch / "online.db"),
               RECOMMNDR_TRAFFIC_FILE=str(scratch / "traffic.json"),
               RECOMMNDR_ALERT_INBOX_PATH=str(scratch / "alerts.db"))  # fmt: skip
    cmd = [EXE, "serve", "--artifacts", str(art), "--port", str(a.port), "--workers", str(a.workers)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{a.port}"
    try:
        wait_ready(api, server, time.perf_counter(), 120, 0.05)
        load = os.getloadavg()[0]
        print(f"# bench_simulate: {os.cpu_count()} cores (load {load:.1f} at start); {data}; API {a.workers} "
              f"worker(s) on the same machine; {a.seconds:g} s per rate; max {a.max_in_flight} visits in flight")  # fmt: skip
        print(f"{'rate':>6} {'visits/s':>9} {'dropped':>8} {'late':>6} {'errors':>7} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'events/s':>9} {'cpu ms/visit':>13} sustained")  # fmt: skip
        rows = []
        for rate in [float(r) for r in a.rates.split(",")]:
            r = step(api, data, rate, a.seconds, a.max_in_flight)
            rows.append(r)
            print(f"{rate:6.0f} {r['achieved']:9.1f} {r['dropped']:8d} {r['late']:6d} {r['errors']:7d} "
                  f"{r['p50']:8.1f} {r['p99']:8.1f} {r['events_per_s']:9.1f} {r['cpu_ms_per_visit']:13.2f} "
                  f"{'yes' if r['sustained'] else 'no'}", flush=True)  # fmt: skip
        ok = [r for r in rows if r["sustained"]]
        best = max(ok, key=lambda r: r["rate"]) if ok else None
        if best is None:
            print("sustained_visits_per_s=0 p99_ms=nan sim_cpu_ms_per_visit=nan sim_ceiling_visits_per_s=nan")
            return
        print(f"sustained_visits_per_s={best['achieved']:.1f} p99_ms={best['p99']:.1f} "
              f"sim_cpu_ms_per_visit={best['cpu_ms_per_visit']:.2f} sim_ceiling_visits_per_s={1000.0 / best['cpu_ms_per_visit']:.0f}")  # fmt: skip
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
