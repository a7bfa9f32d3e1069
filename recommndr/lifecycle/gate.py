"""The promotion gate: does a newly trained model replace the champion? One rule, one place.

A model becomes ``champion`` when there is none yet, or when its held-out ``two_stage.ndcg@10``
beats the champion's (a champion whose run logged no such figure is beaten by any figure). Without
a held-out figure (a hold-out of 0 days) it stays ``challenger``: nothing shows it is better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GATE_METRIC = "two_stage.ndcg@10"


def gate_metric(metrics: dict[str, Any] | None) -> float | None:
    """:data:`GATE_METRIC` of a hold-out evaluation (``{"two_stage": {"ndcg@10": ..}}``), None
    without one."""
    model, name = GATE_METRIC.split(".", 1)
    value = (metrics or {}).get(model, {}).get(name)
    return None if value is None else float(value)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str


def promotion_gate(new: float | None, has_champion: bool, champion: float | None) -> GateDecision:
    """The decision for a challenger scoring ``new`` against the champion's ``champion``."""
    if not has_champion:
        return GateDecision(True, "no champion yet")
    if new is None:
        return GateDecision(False, "no held-out metric to compare (hold-out disabled); stays challenger")
    if champion is None:
        return GateDecision(True, f"{GATE_METRIC} {new:.4f} beats the champion's none")
    if new > champion:
        return GateDecision(True, f"{GATE_METRIC} {new:.4f} beats the champion's {champion:.4f}")
    return GateDecision(False, f"{GATE_METRIC} {new:.4f} does not beat the champion's {champion:.4f}")


def canary_gate(
    new: float | None, has_champion: bool, champion: float | None, tolerance: float
) -> GateDecision:
    """The loop's offline gate: may the challenger go to a canary? Yes when there is no champion,
    no figure to compare, or when its held-out figure is at most ``tolerance`` (relative) below the
    champion's: a retrain on the same data scores the same within noise, and the canary, not this
    gate, judges it on live traffic. A clearly worse model never sees a shopper."""
    if not has_champion:
        return GateDecision(True, "no champion yet")
    if new is None or champion is None:
        return GateDecision(True, f"no held-out {GATE_METRIC} to compare; the canary decides")
    floor = champion * (1.0 - tolerance)
    if new >= floor:
        return GateDecision(
            True, f"{GATE_METRIC} {new:.4f} >= {floor:.4f} (the champion's {champion:.4f} - {tolerance:.0%})"
        )
    return GateDecision(
        False, f"{GATE_METRIC} {new:.4f} < {floor:.4f} (the champion's {champion:.4f} - {tolerance:.0%})"
    )
