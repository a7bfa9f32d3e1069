"""The canary's analysis by known answers: counters read from the API's exposition text, the guards
over their trailing window, the sequential decision, the operator's requests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recommndr.lifecycle.canary import (
    CanaryRules,
    analyse,
    delta,
    p95,
    parse_metrics,
    slower_share,
    stops_canary,
    trim,
)

pytestmark = pytest.mark.unit
BUCKETS = ("0.005", "0.01", "0.1", "0.3", "0.5", "1.0", "+Inf")


def exposition(arms: dict[str, dict[str, float]], rss: float = 1e8) -> str:
    """What /metrics says for these per-variant counters (latencies: ``fast`` under 5 ms, ``slow``
    between 0.3 and 0.5 s)."""
    lines = [f"process_resident_memory_bytes {rss}"]
    for v, a in arms.items():
        lines += [
            f'recommndr_impressions_total{{variant="{v}"}} {a.get("impressions", 0)}',
            f'recommndr_recommendations_served_total{{path="two_stage",variant="{v}"}} {a.get("lists", 0)}',
            f'recommndr_events_total{{event_type="view",variant="{v}"}} {a.get("views", 0)}',
            f'recommndr_events_total{{event_type="purchase",variant="{v}"}} {a.get("purchases", 0)}',
            f'recommndr_variant_errors_total{{variant="{v}"}} {a.get("errors", 0)}',
        ]
        fast, slow = a.get("fast", 0), a.get("slow", 0)
        for le in BUCKETS:
            n = fast + (slow if le in ("0.5", "1.0", "+Inf") else 0)
            lines.append(
                f'recommndr_request_seconds_bucket{{endpoint="/recommendations/{{user_id}}",le="{le}",variant="{v}"}} {n}'
            )
        lines.append(
            f'recommndr_request_seconds_count{{endpoint="/recommendations/{{user_id}}",variant="{v}"}} {fast + slow}'
        )
        # another endpoint's requests never count as the variant's
        lines.append(f'recommndr_request_seconds_count{{endpoint="/popular",variant="{v}"}} 999')
    return "\n".join(lines) + "\n"


def snap(at: float, **arms: dict[str, float]) -> dict[str, Any]:
    return parse_metrics(exposition(arms), at)


RULES = CanaryRules(sustain_s=10, min_requests=20, min_impressions=500, look_seconds=2, step_seconds=10)


def test_the_counters_are_read_per_variant_for_the_recommendations_endpoint_only() -> None:
    s = snap(5.0, champion={"impressions": 100, "lists": 10, "views": 7, "fast": 10},
             challenger={"impressions": 30, "lists": 3, "views": 1, "errors": 1, "fast": 2, "slow": 1})  # fmt: skip
    ch = s["arms"]["challenger"]
    assert (ch["impressions"], ch["lists"], ch["views"], ch["errors"], ch["requests"]) == (30, 3, 1, 1, 3)
    assert ch["buckets"]["0.3"] == 2 and ch["buckets"]["+Inf"] == 3
    assert s["arms"]["champion"]["requests"] == 10 and s["rss"] == 1e8


def test_delta_treats_a_restarted_api_as_counting_from_zero() -> None:
    old = snap(0.0, champion={"impressions": 500, "fast": 50}, challenger={"impressions": 100, "fast": 10})
    new = snap(1.0, champion={"impressions": 40, "fast": 4}, challenger={"impressions": 120, "fast": 12})
    d = delta(new, old)
    assert d["champion"]["impressions"] == 40 and d["champion"]["requests"] == 4  # reset: from zero
    assert d["challenger"]["impressions"] == 20 and d["challenger"]["requests"] == 2


def test_p95_and_the_slower_share_of_a_histogram() -> None:
    b = {"0.1": 90.0, "0.3": 94.0, "0.5": 100.0, "+Inf": 100.0}
    assert slower_share(b, 0.3) == pytest.approx(0.06)
    assert p95(b) == pytest.approx(0.3 + 0.2 * (95 - 94) / 6)
    assert p95({"+Inf": 0.0}) is None and slower_share({}, 0.3) is None


def _run(looks: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    """analyse() at each snapshot after the first (the baseline), carrying history and state."""
    baseline, history, state, out = looks[0], [looks[0]], {}, []
    for s in looks[1:]:
        history = trim([*history, s], RULES)
        r = analyse(history, baseline, RULES, state, False, **kw)
        state = r["state"]
        out.append(r["look"])
    return out


def _series(
    seconds: int, err_rate: float = 0.0, slow: float = 0.0, ctr1: float = 0.05
) -> list[dict[str, Any]]:
    """One snapshot per second: 10 challenger requests (10 products each) and 90 champion ones."""
    looks = []
    for t in range(seconds + 1):
        n1, n0 = 10 * t, 90 * t
        looks.append(snap(float(t),
            champion={"impressions": 10 * n0, "views": round(0.05 * 10 * n0), "purchases": round(0.01 * 10 * n0), "fast": n0},
            challenger={"impressions": 10 * n1, "views": round(ctr1 * 10 * n1), "purchases": round(0.01 * 10 * n1),
                        "errors": round(err_rate * n1), "fast": round((1 - slow) * n1), "slow": round(slow * n1)}))  # fmt: skip
    return looks


def test_a_healthy_challenger_never_trips_a_guard() -> None:
    looks = _run(_series(40))
    assert all(lk["decision"]["action"] == "continue" for lk in looks)
    assert not any(g["breached"] for lk in looks for g in lk["guards"].values())


def test_errors_are_acted_on_once_sustained_for_the_window_and_named_with_their_numbers() -> None:
    looks = _run(_series(30, err_rate=0.10))
    first = next(i for i, lk in enumerate(looks) if lk["decision"]["action"] == "rollback")
    assert first + 1 == RULES.sustain_s  # not before the window is full
    d = looks[first]["decision"]
    assert d["rule"] == "errors" and d["acute"] and "error rate 10.0% > 5%" in d["reason"]
    assert _run(_series(30, err_rate=0.04))[-1]["decision"]["action"] == "continue"  # under the limit


def test_latency_over_the_limit_rolls_back_and_a_few_slow_requests_do_not() -> None:
    assert _run(_series(20, slow=0.2))[-1]["decision"]["rule"] == "latency_p95"
    assert _run(_series(20, slow=0.03))[-1]["decision"]["action"] == "continue"


def test_a_worse_ctr_is_rolled_back_by_the_sequential_test_and_an_equal_one_promoted_at_the_end() -> None:
    looks = _run(_series(60, ctr1=0.02))
    d = next(lk["decision"] for lk in looks if lk["decision"]["action"] != "continue")
    assert (
        d["rule"] == "msprt_ctr"
        and not d["acute"]
        and "below -0.01 after 1,500 challenger products shown" in d["reason"]
    )
    series = _series(600)  # 60,000 challenger products: enough to show it is no worse
    history = trim(series, RULES)
    r = analyse(history, series[0], RULES, {}, last_step=True)
    assert (
        r["look"]["decision"]["action"] == "promote" and r["look"]["decision"]["rule"] == "msprt_noninferior"
    )
    assert r["look"]["ctr"]["z_rule"] is False  # the seed's 2-sigma rule, reported beside it


def test_too_few_products_shown_decide_nothing_and_the_last_step_then_rolls_back() -> None:
    series = _series(3)  # 300 challenger products < min_impressions
    r = analyse(series, series[0], RULES, {}, last_step=False)
    assert r["look"]["decision"]["action"] == "continue"
    r = analyse(series, series[0], RULES, {}, last_step=True)
    assert r["look"]["decision"]["action"] == "rollback"  # not shown to be no worse


def test_the_operator_comes_first_once_per_request_and_a_pause_holds_promotion() -> None:
    series = _series(60)
    control = {
        "paused": False,
        "request": {"id": "r1", "action": "rollback", "by": "ana", "reason": "looks off"},
    }
    r = analyse(series, series[0], RULES, {}, False, control=control)
    assert r["look"]["decision"] == {"action": "rollback", "rule": "operator_rollback", "acute": True,
                                     "reason": "rollback requested by ana: looks off"}  # fmt: skip
    again = analyse(series, series[0], RULES, r["state"], False, control=control)
    assert again["look"]["decision"]["action"] == "continue"  # the same request is not replayed
    later = [{**x, "at": x["at"] + 100} for x in series]  # a canary begun after the request was made
    stale = analyse(later, later[0], RULES, {}, False, control=control)
    assert stale["look"]["decision"]["action"] == "continue"
    held = analyse(series, series[0], RULES, {}, True, control={"paused": True, "request": None})
    assert held["look"]["decision"]["rule"] == "paused" and held["look"]["paused"]


def test_drift_and_stopping_alerts_roll_back_at_once() -> None:
    series = _series(5)
    r = analyse(series, series[0], RULES, {}, False, drift={"kinds": {"feature": True, "score": False}})
    assert r["look"]["decision"]["rule"] == "drift" and "feature" in r["look"]["decision"]["reason"]
    firing = {"status": "firing", "alertname": "RecommndrScoreDrift", "labels": {"variant": "challenger"}}
    r = analyse(series, series[0], RULES, {}, False, alerts=[firing])
    assert r["look"]["decision"]["rule"] == "alerts"
    assert not stops_canary({**firing, "labels": {"variant": "champion"}}, "challenger")
    assert not stops_canary({**firing, "status": "resolved"}, "challenger")
    assert not stops_canary({**firing, "alertname": "RecommndrTargetDown"}, "challenger")


def test_memory_growth_rolls_back() -> None:
    base = parse_metrics(exposition({"champion": {}, "challenger": {}}, rss=1e8), 0.0)
    now = parse_metrics(exposition({"champion": {}, "challenger": {}}, rss=2e8), 1.0)
    assert analyse([base, now], base, RULES, {}, False)["look"]["decision"]["rule"] == "memory"


def test_a_aa_canary_rarely_rolls_back_however_often_it_looks() -> None:
    """200 A/A canaries of 60 looks each, counts drawn at random: the sequential rule's false
    rollbacks stay near its level, the seed's 2-sigma rule's do not."""
    rng = np.random.default_rng(0)
    rules = RULES.model_copy(update={"min_impressions": 200})
    false_seq = false_z = 0
    for _ in range(200):
        state: dict[str, Any] = {}
        tot = {"champion": [0, 0], "challenger": [0, 0]}
        seq = z = False
        base = snap(0.0, champion={}, challenger={})
        for t in range(1, 61):
            for v, n in (("champion", 900), ("challenger", 100)):
                tot[v][0] += n
                tot[v][1] += int(rng.binomial(n, 0.05))
            now = snap(float(t), **{v: {"impressions": a[0], "views": a[1], "purchases": a[1] // 5, "fast": a[0] // 10}
                                    for v, a in tot.items()})  # fmt: skip
            r = analyse([base, now], base, rules, state, False)
            state = r["state"]
            seq |= r["look"]["decision"]["action"] == "rollback"
            z |= bool(r["look"]["ctr"]["z_rule"])
        false_seq += seq
        false_z += z
    assert false_seq / 200 <= 0.06 and false_z / 200 >= 0.15


def test_at_full_share_the_arms_are_compared_as_they_were_while_both_served() -> None:
    series = _series(300)
    rules = RULES.model_copy(update={"cvr_margin": 0.005})
    live = analyse(series[:200], series[0], rules, {}, False, share=0.5)
    later = [*series[:200], snap(400.0, champion=series[199]["arms"]["champion"] | {"fast": 0},
                                 challenger={"impressions": 10**6, "views": 10, "fast": 0})]  # fmt: skip
    full = analyse(later, series[0], rules, live["state"], True, share=1.0)
    # the challenger's 100 % step (a million products shown, almost no views) is not compared
    assert full["look"]["ctr"]["n_challenger"] == live["look"]["ctr"]["n_challenger"]
    assert full["look"]["decision"]["action"] == "promote"


def test_the_design_effect_widens_the_confidence_sequence() -> None:
    series = _series(100)
    narrow = analyse(series, series[0], RULES.model_copy(update={"design_effect": 1.0}), {}, False)["look"][
        "ctr"
    ]
    wide = analyse(series, series[0], RULES.model_copy(update={"design_effect": 4.0}), {}, False)["look"][
        "ctr"
    ]
    assert (wide["ci_high"] - wide["ci_low"]) == pytest.approx(
        2 * (narrow["ci_high"] - narrow["ci_low"]), rel=0.2
    )


def test_the_variance_between_shopper_buckets_by_a_known_answer_and_in_the_decision() -> None:
    from recommndr.lifecycle.canary import BUCKETS, bucket_variance
    from recommndr.serving.traffic import BUCKETS as SERVED_BUCKETS

    assert BUCKETS == SERVED_BUCKETS
    # two buckets, rates 0.1 and 0.3 of 100 products each: p = 0.2, residuals -10 and +10
    assert bucket_variance([10, 30], [100, 100]) == pytest.approx(2 / 1 * 200 / 200**2)
    assert bucket_variance([5], [50]) is None and bucket_variance([0, 0], [0, 0]) is None
    series = _series(100)
    now = series[-1]
    shown = [now["arms"][v]["impressions"] for v in ("champion", "challenger")]

    def with_buckets(spread: float) -> dict[str, Any]:
        s = {**now, "arms": {v: dict(a) for v, a in now["arms"].items()}}
        for v, n in zip(("champion", "challenger"), shown, strict=True):
            rates = np.where(np.arange(32) % 2 == 0, 0.05 - spread, 0.05 + spread)
            imp = np.full(32, n / 32)
            s["arms"][v]["bucket"] = {"impressions": imp.tolist(), "views": (imp * rates).tolist(),
                                      "purchases": (imp * 0.01).tolist()}  # fmt: skip
        return s

    alike = analyse([series[0], with_buckets(0.0)], series[0], RULES, {}, False)["look"]["ctr"]
    apart = analyse([series[0], with_buckets(0.04)], series[0], RULES, {}, False)["look"]["ctr"]
    assert alike["variance_from"] == "shopper buckets" and alike["design_effect"] == pytest.approx(1.0)
    assert apart["design_effect"] > 3 and (apart["ci_high"] - apart["ci_low"]) > 1.5 * (
        alike["ci_high"] - alike["ci_low"]
    )
