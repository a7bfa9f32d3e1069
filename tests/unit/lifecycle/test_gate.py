"""The promotion gate's rule, by known answers."""

from __future__ import annotations

import pytest

from recommndr.lifecycle.gate import GateDecision, promotion_gate

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("new", "has_champion", "champion", "promote", "reason"),
    [
        (0.20, False, None, True, "no champion yet"),
        (None, False, None, True, "no champion yet"),
        (0.25, True, 0.20, True, "two_stage.ndcg@10 0.2500 beats the champion's 0.2000"),
        (0.15, True, 0.20, False, "two_stage.ndcg@10 0.1500 does not beat the champion's 0.2000"),
        (0.20, True, 0.20, False, "does not beat"),  # a tie keeps the champion
        (0.01, True, None, True, "beats the champion's none"),
        (None, True, 0.20, False, "hold-out disabled"),
    ],
)
def test_the_gate(
    new: float | None, has_champion: bool, champion: float | None, promote: bool, reason: str
) -> None:
    got = promotion_gate(new, has_champion, champion)
    assert isinstance(got, GateDecision) and got.promote is promote
    assert reason in got.reason
