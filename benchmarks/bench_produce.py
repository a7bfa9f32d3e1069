"""The event producer's speed: ``POST /events`` throughput and p50 / p99 latency with the broker
(a local Tansu, acks=all) against the local log, and the rate of ``stream simulate --broker``.

    .venv/bin/python benchmarks/bench_produce.py [--data DIR --artifacts DIR] [--seconds 5] [--repeat 3]
        [--clients 8] [--batch 10]

``recommndr serve`` (one worker) is started once per sink; ``--clients`` threads, each on its own
keep-alive connection, post batches of ``--batch`` new events back to back (closed loop) for
``--seconds``. The direct mode produces at 200,000 events/s asked for ``--seconds``. Every figure
is the median of ``--repeat`` runs. The clients, the API and the broker share this machine's cores.
Last line: ``produce_eps=<direct events/s> post_p50_ms=<POST /events p50 with the broker>``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from api_ready import wait_ready

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommndr.streaming.broker import LocalBroker, create_topic, free_port

EXE = str(Path(sys.executable).parent / "recommndr")
TOPIC = "bench-events"


def prepare(scratch: Path) -> tuple[Path, Path]:
    from recommndr.data.synthetic import generate
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import train

    data, art = scratch / "data", scratch / "art"
    generate("tiny", data, seed=7)
    train(data, art, TrainConfig.model_validate({"ranker": {"n_estimators": 60}}))
    return data, art


def post_load(port: int, seconds: float, clients: int, batch: int, tag: str) -> dict[str, float]:
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        seq = 0
        while time.perf_counter() < stop:
            body = json.dumps([{"user_id": (k * 7919 + seq * batch + j) % 2000, "item_id": 1 + j,
                                "event_type": "view", "event_id": f"{tag}-{k}-{seq}-{j}"}
                               for j in range(batch)])  # fmt: skip
            seq += 1
            t0 = time.perf_counter()
            conn.request("POST", "/events", body, {"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            lat[k].append(time.perf_counter() - t0)
            errors[k] += r.status != 202
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    all_lat = np.asarray([x for xs in lat for x in xs]) * 1000
    return {"eps": len(all_lat) * batch / elapsed, "p50": float(np.percentile(all_lat, 50)),
            "p99": float(np.percentile(all_lat, 99)), "errors": float(sum(errors))}  # fmt: skip


def serve(art: Path, scratch: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOMMNDR_")}
    env.update(OPENBLAS_NUM_THREADS="1", RECOMMNDR_ONLINE_STORE="off", RECOMMNDR_RELOAD_INTERVAL_S="0",
               RECOMMNDR_EVENT_LOG_DIR=str(scratch / f"events-{port}"),
               RECOMMNDR_TRAFFIC_FILE=str(scratch / "traffic.json"), **env_extra)  # fmt: skip
    proc = subprocess.Popen(
        [EXE, "serve", "--artifacts", str(art), "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_ready(f"http://127.0.0.1:{port}", proc, time.perf_counter(), 120, 0.2)
    return proc, port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--artifacts", type=Path)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--batch", type=int, default=10)
    a = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-produce-"))
    data, art = (a.data, a.artifacts) if a.data else prepare(scratch)
    results: dict[str, list[dict[str, float]]] = {"log": [], "broker": []}
    with LocalBroker() as broker:
        create_topic(broker.bootstrap, TOPIC, 2)
        sinks = {
            "log": {},
            "broker": {"RECOMMNDR_EVENT_BROKER": broker.bootstrap, "RECOMMNDR_EVENT_TOPIC": TOPIC},
        }
        for sink, extra in sinks.items():
            proc, port = serve(art, scratch, extra)
            try:
                post_load(port, 1.0, a.clients, a.batch, f"warm-{sink}")
                for r in range(a.repeat):
                    res = post_load(port, a.seconds, a.clients, a.batch, f"{sink}-{r}")
                    results[sink].append(res)
                    print(f"# {sink:6} run {r + 1}: {res['eps']:8,.0f} events/s  p50 {res['p50']:6.2f} ms  "
                          f"p99 {res['p99']:6.2f} ms  errors {res['errors']:.0f}", flush=True)  # fmt: skip
            finally:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(30)
        from recommndr.streaming.direct import DirectSimulator

        direct = []
        for r in range(a.repeat):
            sim = DirectSimulator(broker.bootstrap, data, 200_000.0, TOPIC, seed=r)
            res = sim.run(a.seconds)
            direct.append(res.achieved_rate)
            print(f"# direct run {r + 1}: {res.summary()}", flush=True)

    def med(sink: str, key: str) -> float:
        return statistics.median(x[key] for x in results[sink])

    print(f"\n{'sink':8}{'events/s':>12}{'p50 ms':>9}{'p99 ms':>9}   (POST /events, {a.clients} clients x "
          f"{a.batch} events, median of {a.repeat})")  # fmt: skip
    for sink in results:
        print(f"{sink:8}{med(sink, 'eps'):>12,.0f}{med(sink, 'p50'):>9.2f}{med(sink, 'p99'):>9.2f}")
    print(f"direct simulate: {statistics.median(direct):,.0f} events/s (one process, 200,000/s asked)")
    print(f"produce_eps={statistics.median(direct):.0f} post_p50_ms={med('broker', 'p50'):.2f}")


if __name__ == "__main__":
    main()
