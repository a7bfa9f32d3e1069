"""The canary's sequential test under peeking: false alarms with no real difference and the
impressions it needs to catch a worse challenger, against the seed's 2-sigma rule.

    python benchmarks/bench_canary.py [--runs 500] [--looks 300]

Each run: the champion at CTR 5 %, the challenger at 5 % of the traffic; both arms' counts are
looked at ``--looks`` times (every 100 challenger impressions). False alarm: a run in which the
rule ever says the challenger differs (mSPRT: its confidence sequence excludes 0; z: the
challenger below the champion by 2 standard errors) though both are 5 %. Detection: a challenger
at CTR 4.25 % (-15 %); the impressions the challenger had served when the rule first fired.
Last line: ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from recommndr.monitoring.sequential import SequentialTest, z_rule

TAU, ALPHA, BASE, SHARE, STEP = 0.0075, 0.05, 0.05, 0.05, 100


def run(rng: np.random.Generator, p1: float, looks: int) -> tuple[int | None, int | None]:
    """The challenger impressions at which mSPRT and the z rule first fire (None: never)."""
    n1 = STEP * np.arange(1, looks + 1)
    n0 = (n1 * (1 - SHARE) / SHARE).astype(np.int64)
    s1 = rng.binomial(STEP, p1, looks).cumsum()
    s0 = rng.binomial(np.diff(n0, prepend=0), BASE).cumsum()
    test = SequentialTest(TAU, ALPHA)
    first_m = first_z = None
    for k in range(looks):
        look = test.update(int(s0[k]), int(n0[k]), int(s1[k]), int(n1[k]))
        if first_m is None and (look.ci_high < 0 or look.ci_low > 0):
            first_m = int(n1[k])
        if first_z is None and z_rule(int(s0[k]), int(n0[k]), int(s1[k]), int(n1[k])):
            first_z = int(n1[k])
    return first_m, first_z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--looks", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    null = [run(rng, BASE, a.looks) for _ in range(a.runs)]
    fa_m = sum(m is not None for m, _ in null) / a.runs
    fa_z = sum(z is not None for _, z in null) / a.runs
    worse = [run(rng, BASE * 0.85, a.looks) for _ in range(a.runs)]
    hit_m = [m for m, _ in worse if m is not None]
    hit_z = [z for _, z in worse if z is not None]
    med_m = statistics.median(hit_m) if hit_m else float("nan")
    med_z = statistics.median(hit_z) if hit_z else float("nan")
    print(f"{a.runs} runs x {a.looks} looks (every {STEP} challenger impressions, {SHARE:.0%} canary, CTR {BASE:.0%}); "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    print(
        f"no real difference: mSPRT (tau {TAU}, alpha {ALPHA}) fired in {fa_m:.1%} of runs; the 2-sigma rule in {fa_z:.1%}"
    )
    print(f"challenger -15 %: mSPRT caught {len(hit_m) / a.runs:.1%} (median {med_m:,.0f} challenger impressions); "
          f"2-sigma {len(hit_z) / a.runs:.1%} (median {med_z:,.0f})")  # fmt: skip
    print(f"msprt_false_alarm={fa_m:.4f} z_false_alarm={fa_z:.4f} msprt_power={len(hit_m) / a.runs:.4f} "
          f"msprt_median_impressions={med_m:.0f} z_median_impressions={med_z:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
