"""False-alarm rate and power of the baseline-comparison alerts (infra/monitoring/rules/alerts.yml),
measured by simulating the hour they look at: lists and clicks (or clicks and purchases) drawn
binomially, the rule's arithmetic applied as PromQL applies it (the ratio test and the
minimum-traffic condition, both on the measured rates).

    .venv/bin/python benchmarks/bench_alert_rules.py [--reps 200000] [--ctr 0.05] [--cvr 0.10]

Each figure is the chance that one evaluation's window meets the condition. The alert also needs
the condition to hold for its ``for:`` (15 or 30 minutes of overlapping 1-hour windows), which can
only lower it for one hour of traffic; over a day of distinct hours the chances add up. The
decision-grade test for a canary is the sequential one of the canary work (mSPRT); these alerts
are the guards around it.

Traffic is given as the expected count of the rule's numerator at the baseline rate (clicks for
CTR, purchases for conversion), from the rule's minimum (250 / 400) upwards; the champion serves
19 times the challenger's traffic (a 5 % canary), the trailing day 24 times the hour's.
"""

from __future__ import annotations

import argparse

import numpy as np

RULES = {
    # name: (threshold ratio, minimum expected count, baseline traffic multiple)
    "RecommndrCtrBelowChampion": (0.80, 250, 19),
    "RecommndrCtrBelowTrailingDay": (0.80, 250, 24),
    "RecommndrConversionBelowChampion": (0.85, 400, 19),
    "RecommndrConversionBelowTrailingDay": (0.85, 400, 24),
}


def fires(
    rng: np.random.Generator,
    n: int,
    p: float,
    p_base: float,
    ratio: float,
    minimum: float,
    mult: int,
    reps: int,
) -> float:
    """Share of simulated windows where ``rate < ratio x baseline rate`` and the window holds at
    least ``minimum`` expected events (its trials x the measured baseline rate)."""
    hits = rng.binomial(n, p, reps) / n
    base = rng.binomial(n * mult, p_base, reps) / (n * mult)
    return float(np.mean((hits < ratio * base) & (n * base >= minimum)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=200_000)
    ap.add_argument("--ctr", type=float, default=0.05, help="baseline clicks per list")
    ap.add_argument("--cvr", type=float, default=0.10, help="baseline purchases per click")
    ap.add_argument("--seed", type=int, default=12)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    drops = (0.0, 0.10, 0.20, 0.30, 0.40)
    print(f"# {a.reps:,} simulated windows per cell; baseline CTR {a.ctr}, conversion {a.cvr}")
    print(f"{'rule':<38} {'expected':>8} " + " ".join(f"{f'-{d:.0%}':>7}" for d in drops))
    worst_false, power_at_min = 0.0, {}
    for name, (ratio, minimum, mult) in RULES.items():
        base = a.ctr if "Ctr" in name else a.cvr
        for scale in (1, 2, 4):
            expected = minimum * scale
            n = round(expected / base)
            row = [fires(rng, n, base * (1 - d), base, ratio, minimum, mult, a.reps) for d in drops]
            worst_false = max(worst_false, row[0])
            if scale == 1:
                power_at_min[name] = row[drops.index(0.30)]
            print(f"{name:<38} {expected:>8} " + " ".join(f"{x:>7.4f}" for x in row))
    print("# columns: the true drop of the variant's rate against its baseline; -0% is the false-alarm rate")
    print(
        f"false_alarm_max={worst_false:.4f} "
        + " ".join(f"power30_{k}={v:.3f}" for k, v in power_at_min.items())
    )


if __name__ == "__main__":
    main()
