"""Wall time and peak memory of data generation (small, full) and validation (full).

Each measurement runs the real command (`recommndr data ...`) in its own process, timed from the
outside, with that process's peak resident memory from the kernel (wait4). Prints medians over
--repeats runs and the goals of the foundation issue:
full generation <= 60 s and <= 4 GB peak; full validation <= 60 s.

    .venv/bin/python benchmarks/bench_data.py [--repeats 3] [--workdir /tmp/recommndr-bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXE = str(Path(sys.executable).parent / "recommndr")
GiB = 1024**3


def run(args: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of one command."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_maxrss * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/recommndr-bench"))
    ap.add_argument("--skip-full", action="store_true", help="only the small scale (quick check)")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    tasks: list[tuple[str, list[str], float | None, float | None]] = [
        (
            "generate small",
            [EXE, "data", "generate", "--scale", "small", "--out", str(a.workdir / "small")],
            None,
            None,
        ),
        ("validate small", [EXE, "data", "validate", str(a.workdir / "small")], None, None),
    ]
    if not a.skip_full:
        tasks += [
            (
                "generate full",
                [EXE, "data", "generate", "--scale", "full", "--out", str(a.workdir / "full")],
                60,
                4,
            ),
            ("validate full", [EXE, "data", "validate", str(a.workdir / "full")], 60, None),
            ("profile full", [EXE, "data", "profile", str(a.workdir / "full")], None, None),
        ]
    print(f"# bench_data: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"# median of {a.repeats} runs per task (wall of the whole command, incl. interpreter and imports)")
    print(f"{'task':16s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'peak GB':>8s}  goal")
    for name, args, goal_s, goal_gb in tasks:
        walls, peaks = [], []
        for _ in range(a.repeats):
            w, p = run(args)
            walls.append(w)
            peaks.append(p)
        med, peak = statistics.median(walls), max(peaks) / GiB
        goal = ""
        if goal_s is not None:
            ok = med <= goal_s and (goal_gb is None or peak <= goal_gb)
            goal = (
                f"<= {goal_s:.0f} s"
                + (f", <= {goal_gb:.0f} GB" if goal_gb else "")
                + (" ok" if ok else " MISSED")
            )
        print(f"{name:16s} {med:9.1f} {min(walls):7.1f} {max(walls):7.1f} {peak:8.2f}  {goal}", flush=True)
    shutil.rmtree(a.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
