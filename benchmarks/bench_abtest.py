"""How far the offline A/B test and the off-policy estimators can be trusted, against the
simulator's own truth (the exact expectations of its click model over the whole population,
visits drawn in proportion to activity).

A/B (arm a: the bundle's two_stage lists, arm b: the API's popularity list), over ``--ab-seeds``
repetitions of ``--visits`` visits each: how often each rate's 95 % paired-bootstrap interval
covers the true difference, the paired z-test's power (p < 0.05) and its false-alarm rate on an
exact null — each visit is shown a's list in one arm and b's in the other by a fair coin, so both
arms have the same expected rates while the per-visit differences are as large as in the real
comparison. Power is also given at ``--small-visits`` visits, where it is not trivially 1.

Off-policy, over ``--ope-seeds`` logs of ``--ope-visits`` visits under the per-slot mixture
(b's product with probability ``--share-b``): each policy's CTR (clicks per list) estimated by
IPS, SNIPS and DR, with the relative error |estimate - truth| / truth (median, 95th percentile),
the bias (mean estimate / truth - 1) and the 95 % interval's coverage.

    .venv/bin/python benchmarks/bench_abtest.py --data /work/data/small --artifacts /tmp/ab-small

The last line is ``key=value ...``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--artifacts", type=Path, required=True)
    ap.add_argument("--visits", type=int, default=20_000)
    ap.add_argument("--small-visits", type=int, default=1_000)
    ap.add_argument("--ab-seeds", type=int, default=300)
    ap.add_argument("--resamples", type=int, default=300)
    ap.add_argument("--ope-visits", type=int, default=50_000)
    ap.add_argument("--ope-seeds", type=int, default=300)
    ap.add_argument("--share-b", type=float, default=0.5)
    a = ap.parse_args()

    import numpy as np

    from recommndr.evaluation import abtest as ab
    from recommndr.evaluation import offpolicy as op
    from recommndr.evaluation.paired import compare
    from recommndr.evaluation.shoppers import Draws, Funnel, load_shoppers, simulate
    from recommndr.loading import load_bundle

    t_all = time.perf_counter()
    shoppers = load_shoppers(a.data)
    bundle = load_bundle(a.artifacts, ranker_threads=2)
    ab.check_bundle(bundle, bundle.catalogue, shoppers.user_ids, "--artifacts")
    everyone = np.arange(shoppers.user_ids.shape[0])
    t0 = time.perf_counter()
    lists = {
        "a": ab.Arm("two_stage", bundle).lists(shoppers.user_ids),
        "b": ab.Arm("popularity", None, bundle).lists(shoppers.user_ids),
    }
    t_lists = time.perf_counter() - t0
    funnel = {arm: shoppers.funnel(everyone, lists[arm]) for arm in ("a", "b")}
    weight = shoppers.activity / shoppers.activity.sum()
    truth = {}
    for arm in ("a", "b"):
        e = funnel[arm].expected()
        sums = {"lists": 1.0} | {k: float(weight @ v) for k, v in e.items()}
        truth[arm] = {k: sums[m.numerator] / sums[m.denominator] for k, m in ab.METRICS.items()}
    print(f"# {a.data}: {everyone.shape[0]:,} shoppers; both arms' lists for all of them in {t_lists:.1f} s")
    print("# truth (population):", {arm: {k: round(v, 5) for k, v in t.items()} for arm, t in truth.items()})

    def take(f: Funnel, v: np.ndarray) -> Funnel:
        return Funnel(f.click[v], f.cart[v], f.buy[v], f.checkout[v])

    def mix(fa: Funnel, fb: Funnel, coin: np.ndarray) -> Funnel:
        c = coin[:, None]
        return Funnel(
            np.where(c, fa.click, fb.click), np.where(c, fa.cart, fb.cart),
            np.where(c, fa.buy, fb.buy), np.where(coin, fa.checkout, fb.checkout),
        )  # fmt: skip

    # --- A/B -------------------------------------------------------------------------------
    names = list(ab.METRICS)
    cover = dict.fromkeys(names, 0)
    power = dict.fromkeys(names, 0)
    power_small = dict.fromkeys(names, 0)
    null_z = dict.fromkeys(names, 0)
    null_ci = dict.fromkeys(names, 0)
    t0 = time.perf_counter()
    for seed in range(a.ab_seeds):
        rng = np.random.default_rng(seed)
        for n, kind in ((a.visits, "full"), (a.small_visits, "small")):
            v = shoppers.visits(n, rng)
            d = Draws.new(n, ab.SLOTS, rng)
            fa, fb = take(funnel["a"], v), take(funnel["b"], v)
            sa, sb = simulate(fa, d).per_visit(), simulate(fb, d).per_visit()
            diff = compare(sa, sb, ab.METRICS, resamples=a.resamples, seed=seed)
            for k in names:
                if kind == "full":
                    cover[k] += diff[k].ci_low <= truth["a"][k] - truth["b"][k] <= diff[k].ci_high
                    power[k] += diff[k].p_value < 0.05
                else:
                    power_small[k] += diff[k].p_value < 0.05
            if kind == "full":
                coin = rng.random(n) < 0.5
                na, nb = (
                    simulate(mix(fa, fb, coin), d).per_visit(),
                    simulate(mix(fa, fb, ~coin), d).per_visit(),
                )
                nd = compare(na, nb, ab.METRICS, resamples=a.resamples, seed=seed)
                for k in names:
                    null_z[k] += nd[k].p_value < 0.05
                    null_ci[k] += not (nd[k].ci_low <= 0.0 <= nd[k].ci_high)
    t_ab = time.perf_counter() - t0
    r = a.ab_seeds
    print(
        f"\n## A/B: two_stage - popularity, {r} repetitions, {a.resamples} bootstrap resamples ({t_ab:.1f} s)"
    )
    print(f"{'rate':>20} {'true diff':>10} {'CI coverage':>11} {'power':>7} {'power@' + str(a.small_visits):>10} "
          f"{'false alarm z':>13} {'false alarm CI':>14}")  # fmt: skip
    for k in names:
        print(f"{k:>20} {truth['a'][k] - truth['b'][k]:>+10.5f} {cover[k] / r:>11.3f} {power[k] / r:>7.3f} "
              f"{power_small[k] / r:>10.3f} {null_z[k] / r:>13.3f} {null_ci[k] / r:>14.3f}")  # fmt: skip

    # --- off-policy ----------------------------------------------------------------------------
    rows: dict[tuple[str, str], list[tuple[float, bool]]] = {}
    true_ctr = {arm: truth[arm]["ctr"] for arm in ("a", "b")}
    t0 = time.perf_counter()
    for seed in range(a.ope_seeds):
        rng = np.random.default_rng(10_000 + seed)
        v = shoppers.visits(a.ope_visits, rng)
        la, lb = lists["a"][v], lists["b"][v]
        pick_b = rng.random(la.shape) < a.share_b
        shown = np.where(pick_b, lb, la)
        prop = (1.0 - a.share_b) * (la == shown) + a.share_b * (lb == shown)
        p_click = np.where(pick_b, funnel["b"].click[v], funnel["a"].click[v])
        log = op.Log(shown, prop, (rng.random(shown.shape) < p_click).astype(np.float64))
        for arm, target in (("a", la), ("b", lb)):
            for est, value in (
                ("ips", op.ips(log, target)),
                ("snips", op.snips(log, target)),
                ("dr", op.dr(log, target, shoppers.n_items, rng)),
            ):
                rows.setdefault((arm, est), []).append((value.value, value.covers(true_ctr[arm])))
    t_ope = time.perf_counter() - t0
    print(f"\n## Off-policy CTR (clicks per list), {a.ope_seeds} logs of {a.ope_visits:,} visits, "
          f"share_b {a.share_b} ({t_ope:.1f} s, {t_ope / a.ope_seeds * 1000:.0f} ms a log for 6 estimates)")  # fmt: skip
    print(f"{'policy':>10} {'estimator':>9} {'truth':>8} {'median rel err':>14} {'p95 rel err':>11} "
          f"{'bias':>8} {'coverage':>8}")  # fmt: skip
    summary: dict[str, float] = {}
    for (arm, est), vals in rows.items():
        x = np.array([e for e, _ in vals])
        rel = np.abs(x - true_ctr[arm]) / true_ctr[arm]
        cov = float(np.mean([c for _, c in vals]))
        name = "two_stage" if arm == "a" else "popularity"
        bias = float(x.mean() / true_ctr[arm] - 1.0)
        print(f"{name:>10} {est:>9} {true_ctr[arm]:>8.4f} {np.median(rel):>14.4f} {np.quantile(rel, 0.95):>11.4f} "
              f"{bias:>+8.4f} {cov:>8.3f}")  # fmt: skip
        summary[f"{est}_{name}_rel_err_p95"] = float(np.quantile(rel, 0.95))
        summary[f"{est}_{name}_coverage"] = cov
    print(f"\n# total {time.perf_counter() - t_all:.1f} s")
    last = {
        "ab_ctr_ci_coverage": cover["ctr"] / r,
        "ab_cvr_ci_coverage": cover["cvr"] / r,
        "ab_ctr_power": power["ctr"] / r,
        f"ab_cvr_power_at_{a.small_visits}": power_small["cvr"] / r,
        "ab_ctr_false_alarm": null_z["ctr"] / r,
        "ab_cvr_false_alarm": null_z["cvr"] / r,
        **summary,
        "seconds_ab": t_ab,
        "seconds_ope": t_ope,
    }
    print(" ".join(f"{k}={v:.4g}" for k, v in last.items()))


if __name__ == "__main__":
    main()
