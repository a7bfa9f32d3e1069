"""The simulator's counts as text: a one-line progress note and the one-screen summary that
``recommndr stream simulate`` prints (``--json`` prints the counts themselves)."""

from __future__ import annotations

from typing import Any


def _errors(counts: dict[str, Any]) -> str:
    parts = [
        f"{endpoint} {kind}: {n:,}"
        for endpoint, kinds in counts["errors"].items()
        for kind, n in sorted(kinds.items())
    ]
    return ", ".join(parts) or "none"


def progress(counts: dict[str, Any]) -> str:
    """One line: visits so far and their rate, dropped, errors, each variant's CTR."""
    v = counts["visits"]
    ctr = ", ".join(
        f"{name} ctr {c['ctr']:.3f} ({c['lists']:,} lists)" for name, c in counts["variants"].items()
    )
    return (
        f"{v['started']:,} visits ({counts['achieved_rate']:.1f}/s), {v['dropped']:,} dropped, "
        f"errors: {_errors(counts)}; {ctr or 'no list yet'}"
    )


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def summary(counts: dict[str, Any]) -> str:
    """The run on one screen: the schedule, then per variant the funnel, its rates (as the API's
    ``recommndr_variant_rate`` defines them) and the latency of ``/recommendations``."""
    v = counts["visits"]
    lines = [
        f"{counts['api']}: {v['planned']:,} visits due in {counts['seconds']:.1f} s at {counts['rate']:g}/s; "
        f"{v['started']:,} started ({counts['achieved_rate']:.1f}/s), {v['dropped']:,} dropped "
        f"(more than {counts['max_in_flight']} in flight), {v['late']:,} started late "
        f"(max {counts['max_lag_ms']:.0f} ms), {v['cancelled']:,} cancelled at the end",
        f"errors: {_errors(counts)}; events lost with failed posts: {counts['events_lost']:,}",
        "",
        f"{'variant':<12}{'lists':>9}{'views':>9}{'carts':>8}{'buys':>7}{'ctr':>8}{'atc':>8}{'cvr':>8}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}",
    ]
    for name, c in counts["variants"].items():
        lat = c["latency_ms"]
        lines.append(
            f"{name:<12}{c['lists']:>9,}{c['views']:>9,}{c['carts']:>8,}{c['purchases']:>7,}{c['ctr']:>8.4f}"
            f"{c['atc']:>8.4f}{c['cvr']:>8.4f}{_ms(lat['p50']):>9}{_ms(lat['p95']):>9}{_ms(lat['p99']):>9}"
        )
    if not counts["variants"]:
        lines.append("(no list was answered)")
    unknown = sum(c["unknown_items"] for c in counts["variants"].values())
    if unknown:
        shown = sum(c["items_shown"] for c in counts["variants"].values())
        lines.append(
            f"note: {unknown:,} of {shown:,} products shown are not in the data's catalogue (never clicked)"
        )
    return "\n".join(lines)
