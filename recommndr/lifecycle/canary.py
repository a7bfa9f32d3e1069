"""The canary's analysis: at each look, the challenger against the champion, from the API's own
counters, and a decision — continue, roll back (naming the rule and its numbers) or, at the last
step, promote.

Two kinds of rule, each with its parameters in :class:`CanaryRules`:

- **Sequential, on the business figures.** Per variant, the products shown since the canary
  started (``recommndr_impressions_total``) are the trials; a view of one (``recommndr_events_total``
  with the list's variant) is a click, a purchase a conversion. The mSPRT of
  :mod:`recommndr.monitoring.sequential` on the difference challenger − champion gives a confidence
  sequence that stays valid however often it is looked at: roll back when it lies below
  ``-margin``; at the last step promote only when it lies above ``-margin``. Nothing is decided
  before each arm has ``min_impressions``. The seed's "below the champion − 2σ" rule is reported
  beside it (``z_rule``), never acted on.
- **Guards that act at once** (an acute problem), over the trailing ``sustain_s`` seconds of the
  challenger's traffic: 5xx share of its ``/recommendations`` answers above ``error_rate``;
  p95 latency above ``latency_p95_s`` (more than 5 % of its requests slower: the histogram has a
  bucket edge at 0.3 s); the drift check on its window flagging feature, score, confidence or
  validation drift; a firing alert in the API's inbox for it (drift, latency, errors, memory,
  CPU); the API's resident memory grown past ``memory_growth`` × its size at the start.

"Sustained" means the rate over the whole trailing window is over the limit, with at least
``min_requests`` requests in it and the window at least ``sustain_s`` long: a guard needs that
much of the challenger's traffic before it can fire, and one slow request cannot.

The snapshot of the counters is a small JSON document so that Durable activities can carry it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recommndr.monitoring.sequential import Look, binomial_variance, decide, msprt_with_variance, z_rule

Decision = Literal["continue", "rollback", "promote"]
VARIANTS = ("champion", "challenger")
RECOMMEND_ENDPOINT = "/recommendations/{user_id}"
# alerts of infra/monitoring/rules/alerts.yml that stop a canary when they fire for its challenger
# (or, with no variant label, for the whole API while the canary runs)
STOPPING_ALERTS = frozenset({
    "RecommndrLatencyP95High", "RecommndrErrorRateHigh", "RecommndrFeatureDrift", "RecommndrScoreDrift",
    "RecommndrConfidenceDrop", "RecommndrValidationFailureSpike", "RecommndrMemoryHigh",
    "RecommndrMemoryGrowth", "RecommndrCpuSaturated", "RecommndrCpuPerRequestGrowth",
    "RecommndrCtrBelowChampion", "RecommndrConversionBelowChampion",
})  # fmt: skip
HISTORY_S_EXTRA = 2.0  # snapshots kept a little past sustain_s, so a full window is always there


class CanaryRules(BaseModel):
    """Every threshold of the canary's decision (settings; ``recommndr retrain`` takes them as JSON)."""

    model_config = ConfigDict(extra="forbid")
    steps: tuple[float, ...] = Field((0.05, 0.25, 0.5, 1.0), min_length=1, max_length=10)
    step_seconds: float = Field(300.0, gt=0, le=86_400, description="hold time of each step")
    look_seconds: float = Field(15.0, gt=0, le=3_600, description="time between looks")
    # sequential tests
    alpha: float = Field(0.05, gt=0, lt=1, description="level of each sequential test")
    tau_ctr: float = Field(
        0.0075, gt=0, description="mixture scale ~ the smallest CTR difference that matters"
    )
    tau_cvr: float = Field(0.002, gt=0, description="the same for conversion (purchases per product shown)")
    ctr_margin: float = Field(0.01, ge=0, description="non-inferiority margin on CTR (absolute)")
    cvr_margin: float = Field(0.002, ge=0, description="harm margin on conversion (absolute; a guardrail)")
    min_impressions: int = Field(2_000, ge=1, description="products shown per arm before any decision")
    design_effect: float = Field(
        2.0, ge=1, le=100,
        description="variance inflation for products shown to the same shopper (users, not products, "
        "are assigned to a variant): counts are divided by it, the effective sample size",
    )  # fmt: skip
    max_extension: float = Field(
        4.0, ge=0, le=100,
        description="the last step, once held, goes on (this many step_seconds at most) while the test is "
        "inconclusive: promoted as soon as the sequence clears -margin, rolled back when it falls below",
    )  # fmt: skip
    # guards
    sustain_s: float = Field(300.0, gt=0, description="how long a guard's condition must hold")
    min_requests: int = Field(50, ge=1, description="challenger requests in the window before a guard fires")
    error_rate: float = Field(0.05, gt=0, lt=1, description="5xx share of the challenger's answers")
    latency_p95_s: float = Field(0.3, gt=0, description="p95 latency of the challenger's answers")
    memory_growth: float = Field(1.5, gt=1, description="resident memory over its size at the start")
    drift: bool = Field(True, description="roll back on the drift check of the challenger's window")
    drift_alpha: float = Field(
        0.01, gt=0, lt=1,
        description="the drift check's false alarms over all of a canary's looks and its four kinds "
        "together (the k-th look tests each kind at spent_alpha(drift_alpha, k) / 4; the watch of a "
        "promoted champion spends its own)",
    )  # fmt: skip
    alerts: bool = Field(True, description="roll back on a firing stopping alert in the API's inbox")
    # after promotion: the same guards watch the new champion
    watch_seconds: float = Field(0.0, ge=0, description="guard the new champion this long after promotion")


# monitoring.drift's EVENT_* (a test keeps them equal)
SHOPPER_EVENT_FIELDS = ("price", "category", "event_type")  # fmt: skip
# ranking features (ranking.features.FEATURES) of the shopper alone, whatever product is shown
SHOPPER_FEATURES = ("user_events_log", "user_purchases_log", "user_days_since_last_log")


def of_the_model(name: str) -> bool:
    """Whether a quantity of the drift check can differ between the canary's arms by the model's
    doing: all but the shopper's own features (their events, purchases and days since their last
    one, the same whatever product is shown) and the events' price, category and type (all that the
    arm's shoppers did, much of it not on a list the model made). Those describe who is in the arm:
    the split is by shopper, so each arm holds shoppers of its own, and at a small share a few
    frequent ones fill the challenger's window (its lists are not independent draws, which the
    check assumes). The shopper-and-product features (affinity, price against the shopper's, their
    history with the product) stay: which products a model shows whom moves them."""
    return name not in SHOPPER_FEATURES and name not in SHOPPER_EVENT_FIELDS


# --- counters ---------------------------------------------------------------------------------
BUCKETS = 32  # recommndr.serving.traffic.BUCKETS (a test keeps the two equal)
BUCKET_KINDS = ("impressions", "views", "purchases")


def _arm() -> dict[str, Any]:
    return {"impressions": 0.0, "lists": 0.0, "views": 0.0, "carts": 0.0, "purchases": 0.0,
            "requests": 0.0, "errors": 0.0, "buckets": {}, "bucket": None}  # fmt: skip


def parse_metrics(text: str, at: float) -> dict[str, Any]:
    """The counters the canary reads from the API's ``/metrics`` text, per variant, at ``at``."""
    from prometheus_client.parser import text_string_to_metric_families

    arms = {v: _arm() for v in VARIANTS}
    rss = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            variant = s.labels.get("variant")
            if s.name == "process_resident_memory_bytes":
                rss = float(s.value)
            if variant not in arms:
                continue
            arm = arms[variant]
            if s.name == "recommndr_impressions_total":
                arm["impressions"] += s.value
            elif s.name == "recommndr_recommendations_served_total":
                arm["lists"] += s.value
            elif s.name == "recommndr_events_total":
                key = {"view": "views", "add_to_cart": "carts", "purchase": "purchases"}.get(
                    s.labels["event_type"]
                )
                if key:
                    arm[key] += s.value
            elif s.name == "recommndr_canary_bucket_total" and s.labels.get("kind") in BUCKET_KINDS:
                b = int(s.labels["bucket"])
                if 0 <= b < BUCKETS:
                    if arm["bucket"] is None:
                        arm["bucket"] = {k: [0.0] * BUCKETS for k in BUCKET_KINDS}
                    arm["bucket"][s.labels["kind"]][b] += s.value
            elif s.name == "recommndr_variant_errors_total":
                arm["errors"] += s.value
            elif s.labels.get("endpoint") == RECOMMEND_ENDPOINT:
                if s.name == "recommndr_request_seconds_count":
                    arm["requests"] += s.value
                elif s.name == "recommndr_request_seconds_bucket":
                    arm["buckets"][s.labels["le"]] = arm["buckets"].get(s.labels["le"], 0.0) + s.value
    return {"at": at, "arms": arms, "rss": rss}


def delta(new: dict[str, Any], old: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant, what the counters gained between two snapshots (never negative: an API that
    restarted has reset them, and its gains are then counted from zero)."""
    out: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        a, b = new["arms"][v], old["arms"][v]
        reset = a["requests"] < b["requests"] or a["impressions"] < b["impressions"]
        base = _arm() if reset else b
        d = {k: max(0.0, a[k] - base[k]) for k in a if k not in ("buckets", "bucket")}
        d["buckets"] = {le: max(0.0, n - base["buckets"].get(le, 0.0)) for le, n in a["buckets"].items()}
        d["bucket"] = None
        if a.get("bucket") is not None:
            old_b = base.get("bucket") or {k: [0.0] * BUCKETS for k in BUCKET_KINDS}
            d["bucket"] = {k: [max(0.0, x - y) for x, y in zip(a["bucket"][k], old_b[k], strict=True)]
                           for k in BUCKET_KINDS}  # fmt: skip
        out[v] = d
    return out


def p95(buckets: dict[str, float]) -> float | None:
    """The 95th percentile latency of a (delta) histogram, interpolated inside its bucket as
    Prometheus' ``histogram_quantile`` does; None without requests."""
    edges = sorted(((math.inf if le == "+Inf" else float(le)), n) for le, n in buckets.items())
    if not edges or edges[-1][1] <= 0:
        return None
    total, rank = edges[-1][1], 0.95 * edges[-1][1]
    lo, below = 0.0, 0.0
    for edge, count in edges:
        if count >= rank:
            if math.isinf(edge):
                return lo
            return lo + (edge - lo) * (rank - below) / max(count - below, 1e-12)
        lo, below = edge, count
    return lo if total else None


def slower_share(buckets: dict[str, float], limit_s: float) -> float | None:
    """The share of requests slower than ``limit_s`` (a bucket edge, exactly)."""
    total = buckets.get("+Inf", 0.0)
    if total <= 0:
        return None
    under = max(
        (n for le, n in buckets.items() if le != "+Inf" and float(le) <= limit_s + 1e-12), default=0.0
    )
    return 1.0 - under / total


# --- the analysis -----------------------------------------------------------------------------
def _guard(value: float | None, limit: float, breached: bool, **numbers: Any) -> dict[str, Any]:
    return {"value": value, "limit": limit, "breached": bool(breached), **numbers}


def guards(
    history: list[dict[str, Any]],
    rules: CanaryRules,
    variant: str,
    baseline_rss: float,
    drift: dict[str, Any] | None,
    alerts: list[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """The acute rules over the trailing window of ``history`` (snapshots, oldest first)."""
    now = history[-1]
    start = next((s for s in history if now["at"] - s["at"] <= rules.sustain_s), now)
    # the newest snapshot at least sustain_s old starts the window; without one, the window is short
    full = [s for s in history if now["at"] - s["at"] >= rules.sustain_s]
    if full:
        start = full[-1]
    span = now["at"] - start["at"]
    d = delta(now, start)[variant]
    enough = span >= rules.sustain_s and d["requests"] >= rules.min_requests
    err = d["errors"] / d["requests"] if d["requests"] else None
    slow = slower_share(d["buckets"], rules.latency_p95_s)
    out = {
        "errors": _guard(err, rules.error_rate, enough and err is not None and err > rules.error_rate,
                         requests=d["requests"], window_s=span),
        "latency_p95": _guard(p95(d["buckets"]), rules.latency_p95_s,
                              enough and slow is not None and slow > 0.05, requests=d["requests"], window_s=span),
        "memory": _guard(now["rss"], baseline_rss * rules.memory_growth,
                         baseline_rss > 0 and now["rss"] > baseline_rss * rules.memory_growth),
    }  # fmt: skip
    if rules.drift and drift is not None:
        kinds = [k for k, flagged in drift.get("kinds", {}).items() if flagged]
        out["drift"] = _guard(float(len(kinds)), 0.0, bool(kinds), kinds=kinds, alpha=drift.get("alpha"),
                              features=list(drift.get("features") or [])[:10],
                              shopper_features=list(drift.get("shopper_features") or [])[:10])  # fmt: skip
    if rules.alerts:
        firing = sorted({a["alertname"] for a in alerts if stops_canary(a, variant)})
        out["alerts"] = _guard(float(len(firing)), 0.0, bool(firing), alerts=firing)
    return out


def stops_canary(alert: dict[str, Any], variant: str) -> bool:
    """Whether a received alert (the inbox's row) stops the canary of ``variant``."""
    labels = alert.get("labels") or {}
    return (
        alert.get("status") == "firing"
        and alert.get("alertname") in STOPPING_ALERTS
        and labels.get("variant", variant) == variant
    )


def bucket_variance(successes: list[float], trials: list[float]) -> float | None:
    """The variance of the rate sum(successes) / sum(trials) between shopper buckets (the delta
    method for a ratio over clusters): buckets of shoppers, drawn at random, are independent where
    products shown to one shopper are not. None with fewer than two buckets holding trials."""
    n = np.asarray(trials, np.float64)
    s = np.asarray(successes, np.float64)
    used = n > 0
    b = int(used.sum())
    total = float(n.sum())
    if b < 2 or total <= 0:
        return None
    p = float(s.sum()) / total
    return float(b / (b - 1) * np.sum((s[used] - p * n[used]) ** 2) / total**2)


def sequential(
    counts: dict[str, dict[str, Any]], rules: CanaryRules, state: dict[str, Any], last_step: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The mSPRT looks on CTR and conversion since the canary began (``counts``: the delta since
    the baseline), carrying the running confidence sequences in ``state``; and the decision.

    The variance of each arm's rate is estimated between its shopper buckets where the API counts
    them (``recommndr_canary_bucket_total``), never below the products-as-units (binomial) one;
    without buckets, the binomial variance times ``design_effect``."""
    c0, c1 = counts["champion"], counts["challenger"]
    n0, n1 = int(c0["impressions"]), int(c1["impressions"])
    out: dict[str, Any] = {}
    decisions: list[tuple[str, str]] = []
    promotable: list[str] = []  # shown no worse than -margin already
    new_state = dict(state)
    for name, key, tau, relative in (("ctr", "views", rules.tau_ctr, rules.ctr_margin),
                                     ("cvr", "purchases", rules.tau_cvr, rules.cvr_margin)):  # fmt: skip
        s0, s1 = min(int(c0[key]), n0), min(int(c1[key]), n1)
        margin = relative
        entry: dict[str, Any] = {"champion": s0 / n0 if n0 else None, "challenger": s1 / n1 if n1 else None,
                                 "n_champion": n0, "n_challenger": n1, "margin": margin}  # fmt: skip
        if n0 and n1:
            binomial = binomial_variance(s0, n0, s1, n1)
            per_arm = [bucket_variance(c["bucket"][key], c["bucket"]["impressions"]) if c.get("bucket") else None
                       for c in (c0, c1)]  # fmt: skip
            if all(v is not None for v in per_arm):
                v, how = max(binomial, float(per_arm[0]) + float(per_arm[1])), "shopper buckets"  # type: ignore[arg-type]
            else:
                v, how = binomial * rules.design_effect, f"binomial x {rules.design_effect:g}"
            theta, lr, lo, hi = msprt_with_variance(s1 / n1 - s0 / n0, v, tau, rules.alpha)
            p = min(1.0, 1.0 / lr)
            sampled = min(n0, n1) >= rules.min_impressions
            prev = state.get(name) if sampled else None  # the first looks' variance is unreliable
            if prev is not None:  # the running intersection and minimum, across activity calls
                lo2, hi2 = max(lo, prev["ci_low"]), min(hi, prev["ci_high"])
                if lo2 <= hi2:  # an empty intersection says the rate moved: keep this look's
                    lo, hi = lo2, hi2
                p = min(p, prev["p_value"])
            if sampled:
                new_state[name] = {"ci_low": lo, "ci_high": hi, "p_value": p}
            look = Look(theta, lo, hi, p, lr, n0, n1)
            # CTR is the primary figure: shown no worse to promote; conversion (rarer by far) is a
            # guardrail: it rolls back on evidence of harm, it is not required to be shown no worse
            guardrail = name == "cvr"
            verdict = decide(look, rules.min_impressions, margin, last_step and not guardrail)
            if guardrail or decide(look, rules.min_impressions, margin, True) == "promote":
                promotable.append(name)
            entry.update(diff=theta, ci_low=lo, ci_high=hi, p_value=p, decision=verdict, variance=v,
                         variance_from=how, design_effect=v / binomial, z_rule=z_rule(s0, n0, s1, n1))  # fmt: skip
            decisions.append((name, verdict))
        else:
            entry.update(diff=None, ci_low=None, ci_high=None, p_value=1.0, decision="continue", z_rule=False)
            decisions.append((name, "rollback" if last_step and name == "ctr" else "continue"))
        out[name] = entry
    return out, new_state | {"_decisions": decisions, "_promotable": promotable}


def analyse(
    history: list[dict[str, Any]],
    baseline: dict[str, Any],
    rules: CanaryRules,
    state: dict[str, Any],
    last_step: bool,
    drift: dict[str, Any] | None = None,
    alerts: list[dict[str, Any]] | None = None,
    control: dict[str, Any] | None = None,
    variant: str = "challenger",
    business: bool = True,
    share: float = 0.0,
    may_promote: bool = False,
) -> dict[str, Any]:
    """One look: the guards, the sequential tests (``business``; off when only guarding a new
    champion) and the decision ``{"action", "rule", "reason", "acute"}``; the operator's pending
    request (``control``) comes first."""
    now = history[-1]
    paused = bool((control or {}).get("paused"))
    # a paused canary holds its step: only evidence of harm (or a guard) still rolls it back
    last_step = last_step and not paused
    may_promote = may_promote and not paused
    g = guards(history, rules, variant, float(baseline.get("rss", 0.0)), drift, alerts or [])
    look: dict[str, Any] = {"guards": g}
    new_state = dict(state)
    if business:
        # the arms are compared while both serve: at 100 % the champion serves nobody, and the
        # challenger's shoppers of that step are not comparable with the champion's before it
        if share < 1.0:
            new_state["both_live"] = now
        seq, new_state = sequential(
            delta(new_state.get("both_live", now), baseline), rules, new_state, last_step
        )
        look.update(seq)
    request = (control or {}).get("request")
    if request and float(request.get("at") or 0.0) < float(baseline.get("at", 0.0)):
        request = None  # asked before this canary began (an earlier canary's, a manual rollback's)
    if request and not business and request.get("action") != "rollback":
        request = None  # guarding a promoted champion: only a rollback request means anything
    action: Decision = "continue"
    rule, reason, acute = "", "", False
    if request and request.get("id") not in state.get("handled", []):
        action = "rollback" if request.get("action") == "rollback" else "promote"
        rule, acute = f"operator_{action}", action == "rollback"
        reason = f"{action} requested by {request.get('by', '?')}: {request.get('reason', '')}".strip()
        new_state["handled"] = [*state.get("handled", []), request.get("id")][-20:]
    elif breached := [name for name, x in g.items() if x["breached"]]:
        action, rule, acute = "rollback", breached[0], True
        reason = "; ".join(_guard_reason(name, g[name], rules) for name in breached)
    elif business:
        verdicts = dict(new_state.pop("_decisions"))
        if "rollback" in verdicts.values():
            name = next(n for n, v in verdicts.items() if v == "rollback")
            e = look[name]
            action, rule = "rollback", f"msprt_{name}"
            reason = (f"{name} challenger - champion: confidence sequence [{_f(e['ci_low'])}, {_f(e['ci_high'])}] "
                      f"{'below' if e['ci_high'] is not None and e['ci_high'] < -e['margin'] else 'not above'} "
                      f"-{e['margin']} after {e['n_challenger']:,} challenger products shown")  # fmt: skip
        elif (last_step or may_promote) and len(new_state.pop("_promotable", [])) == len(verdicts):
            action, rule = "promote", "msprt_noninferior"
            reason = "; ".join(
                f"{n} confidence sequence [{_f(look[n]['ci_low'])}, {_f(look[n]['ci_high'])}] above -{look[n]['margin']}"
                for n in ("ctr", "cvr")
            )
    new_state.pop("_decisions", None)
    new_state.pop("_promotable", None)
    if paused and action == "continue":
        rule, reason = "paused", "paused by the operator: holding at this step"
    look["decision"] = {"action": action, "rule": rule, "reason": reason, "acute": acute}
    look["paused"] = paused
    look["at"] = now["at"]
    return {"look": look, "state": new_state}


def _f(x: float | None) -> str:
    return "none" if x is None else f"{x:+.4f}"


def _guard_reason(name: str, g: dict[str, Any], rules: CanaryRules) -> str:
    if name == "errors":
        return f"error rate {g['value']:.1%} > {rules.error_rate:.0%} over {g['window_s']:.0f} s ({g['requests']:.0f} requests)"
    if name == "latency_p95":
        return f"p95 latency {g['value']:.3f} s > {rules.latency_p95_s} s over {g['window_s']:.0f} s"
    if name == "memory":
        return f"resident memory {g['value'] / 2**20:.0f} MiB > {g['limit'] / 2**20:.0f} MiB"
    if name == "drift":
        level = f" at level {g['alpha']:.2g}" if g.get("alpha") is not None else ""
        which = f" ({', '.join(g['features'])})" if g.get("features") else ""
        return f"drift check flagged {', '.join(g['kinds'])}{which}{level}"
    return f"alerts firing: {', '.join(g['alerts'])}"


def trim(history: list[dict[str, Any]], rules: CanaryRules) -> list[dict[str, Any]]:
    """The snapshots a guard can still need (one at least sustain_s old, and the newer ones)."""
    now = history[-1]["at"]
    old = [i for i, s in enumerate(history) if now - s["at"] >= rules.sustain_s + HISTORY_S_EXTRA]
    kept = history[old[-1] :] if old else history
    # the guards need no shopper buckets: dropped, the history stays small (it travels in the
    # orchestration's history at every look)
    return [{**s, "arms": {v: {**a, "bucket": None} for v, a in s["arms"].items()}} for s in kept]
