"""Known answers for the ranking metrics that gate promotion (graded gains 1 view, 2 cart,
3 purchase; NDCG with exponential gain 2^g - 1), and agreement with a plain loop written here on
seeded random users."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommndr.evaluation.metrics import mean_metrics, user_metrics

pytestmark = pytest.mark.unit

NAMES = ("recall", "hit_rate", "ndcg", "map")
A, B, C, X, Y = 11, 22, 33, 90, 91  # X and Y are never relevant


def metrics(ranked: list[int], targets: dict[int, int], k: int) -> dict[str, float]:
    """The four metrics at one ``k``, without the ``@k`` suffix."""
    out = user_metrics(np.array(ranked, dtype=np.int64), targets, (k,))
    assert set(out) == {f"{n}@{k}" for n in NAMES}
    return {n: out[f"{n}@{k}"] for n in NAMES}


def reference(ranked: list[int], targets: dict[int, int], k: int) -> dict[str, float]:
    """The textbook definitions, one position at a time; an item repeated in the list counts
    only where it first appears."""
    seen: set[int] = set()
    hits, dcg, ap = 0, 0.0, 0.0
    for pos, item in enumerate(ranked[:k], start=1):
        if item in seen:
            continue
        seen.add(item)
        gain = targets.get(item, 0)
        if gain > 0:
            hits += 1
            dcg += (2**gain - 1) / math.log2(pos + 1)
            ap += hits / pos
    ideal = sorted(targets.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    n = len(targets)
    return {
        "recall": hits / n if n else 0.0,
        "hit_rate": float(hits > 0),
        "ndcg": dcg / idcg if idcg else 0.0,
        "map": ap / min(n, k) if n else 0.0,
    }


@pytest.mark.parametrize(("rank", "ndcg"), [(1, 1.0), (2, 1 / math.log2(3)), (3, 0.5), (4, 1 / math.log2(5))])
def test_one_relevant_item_at_rank(rank: int, ndcg: float) -> None:
    ranked = [*[X, Y, 92][: rank - 1], A, 93, 94]
    got = metrics(ranked, {A: 1}, 5)
    assert got == pytest.approx({"recall": 1.0, "hit_rate": 1.0, "ndcg": ndcg, "map": 1 / rank})


@pytest.mark.parametrize("gain", [1, 2, 3])
def test_one_relevant_item_ndcg_does_not_depend_on_its_gain(gain: int) -> None:
    assert metrics([X, A], {A: gain}, 2)["ndcg"] == pytest.approx(1 / math.log2(3))


def test_relevant_item_below_k_counts_nothing() -> None:
    assert metrics([X, Y, A], {A: 3}, 2) == {"recall": 0.0, "hit_rate": 0.0, "ndcg": 0.0, "map": 0.0}
    assert metrics([X, Y, A], {A: 3}, 3)["recall"] == 1.0


def test_two_relevant_items() -> None:
    ranked, targets = [A, X, B], {A: 1, B: 1}
    assert metrics(ranked, targets, 1) == pytest.approx(
        {"recall": 0.5, "hit_rate": 1.0, "ndcg": 1.0, "map": 1.0}  # map@1 divides by min(2, 1)
    )
    assert metrics(ranked, targets, 3) == pytest.approx(
        {
            "recall": 1.0,
            "hit_rate": 1.0,
            "ndcg": (1 + 1 / 2) / (1 + 1 / math.log2(3)),
            "map": (1 / 1 + 2 / 3) / 2,
        }
    )


def test_graded_gains_order_the_ideal_list() -> None:
    # a view ranked above a purchase: DCG 1 + 7/log2(3) against the ideal 7 + 1/log2(3)
    got = metrics([A, B], {A: 1, B: 3}, 2)
    assert got["ndcg"] == pytest.approx((1 + 7 / math.log2(3)) / (7 + 1 / math.log2(3)))
    assert metrics([B, A], {A: 1, B: 3}, 2)["ndcg"] == pytest.approx(1.0)
    # map and recall ignore the grades
    assert got["map"] == metrics([B, A], {A: 1, B: 3}, 2)["map"] == 1.0


def test_ideal_dcg_uses_all_targets_not_only_those_listed() -> None:
    # a purchase the list missed lowers NDCG even though every listed item is relevant
    got = metrics([A], {A: 1, B: 3}, 2)
    assert got["ndcg"] == pytest.approx(1 / (7 + 1 / math.log2(3)))
    assert got["recall"] == 0.5
    assert got["map"] == 0.5  # (1/1) / min(2, 2)


def test_map_divides_by_the_targets_that_fit_in_k() -> None:
    assert metrics([A, B], {A: 1, B: 1, C: 1}, 2)["map"] == 1.0  # / min(3, 2)
    assert metrics([A, B], {A: 1, B: 1, C: 1}, 3)["map"] == pytest.approx(2 / 3)


def test_no_relevant_item_in_the_list() -> None:
    zero = {"recall": 0.0, "hit_rate": 0.0, "ndcg": 0.0, "map": 0.0}
    assert metrics([X, Y], {A: 2}, 10) == zero
    assert metrics([], {A: 2}, 10) == zero  # nothing recommended


def test_no_targets_is_zero_not_a_division_by_zero() -> None:
    assert metrics([A, X], {}, 10) == {"recall": 0.0, "hit_rate": 0.0, "ndcg": 0.0, "map": 0.0}


def test_k_larger_than_the_list() -> None:
    got = metrics([X, A], {A: 1}, 10)
    assert got == pytest.approx({"recall": 1.0, "hit_rate": 1.0, "ndcg": 1 / math.log2(3), "map": 0.5})
    # more targets than listed items: the ideal list has them all, map divides by min(3, 10)
    got = metrics([A], {A: 1, B: 1, C: 1}, 10)
    ideal = 1 + 1 / math.log2(3) + 1 / 2
    assert got == pytest.approx({"recall": 1 / 3, "hit_rate": 1.0, "ndcg": 1 / ideal, "map": 1 / 3})


def test_a_repeated_item_counts_once() -> None:
    # a list that repeats its one good item must not score above the perfect list [A]
    assert metrics([A, A, A], {A: 1}, 3) == {"recall": 1.0, "hit_rate": 1.0, "ndcg": 1.0, "map": 1.0}
    assert metrics([A, A, B], {A: 1, B: 1}, 3) == pytest.approx(metrics([A, X, B], {A: 1, B: 1}, 3))
    assert metrics([X, X, A], {A: 1}, 3) == pytest.approx(metrics([X, Y, A], {A: 1}, 3))


def test_several_ks_at_once_match_one_at_a_time() -> None:
    ranked, targets = np.array([X, A, Y, B, C], dtype=np.int64), {A: 2, B: 1, C: 3}
    ks = (1, 3, 5, 10)
    together = user_metrics(ranked, targets, ks)
    assert together == {key: v for k in ks for key, v in user_metrics(ranked, targets, (k,)).items()}
    assert [together[f"recall@{k}"] for k in ks] == pytest.approx([0.0, 1 / 3, 1.0, 1.0])


def random_user(rng: np.random.Generator, duplicates: bool) -> tuple[list[int], dict[int, int]]:
    n_items = 40
    length = int(rng.integers(0, 30))
    if duplicates:
        ranked = rng.integers(0, n_items, length).tolist()
    else:
        ranked = rng.permutation(n_items)[:length].tolist()
    relevant = rng.permutation(n_items)[: int(rng.integers(1, 12))]
    targets = {int(i): int(rng.integers(1, 4)) for i in relevant}
    return ranked, targets


@pytest.mark.parametrize("duplicates", [False, True], ids=["unique", "with-duplicates"])
def test_matches_the_reference_on_random_users(duplicates: bool) -> None:
    rng = np.random.default_rng(20240601)
    ks = (1, 2, 5, 10, 20, 50)
    for _ in range(300):
        ranked, targets = random_user(rng, duplicates)
        got = user_metrics(np.array(ranked, dtype=np.int64), targets, ks)
        want = {f"{n}@{k}": v for k in ks for n, v in reference(ranked, targets, k).items()}
        assert got == pytest.approx(want, abs=1e-12), (ranked, targets)
        assert all(0.0 <= v <= 1.0 for v in got.values()), (ranked, targets, got)


def test_mean_over_users_of_varying_list_lengths() -> None:
    rng = np.random.default_rng(7)
    ks = (5, 10)
    users = [random_user(rng, duplicates=False) for _ in range(50)]
    assert len({len(r) for r, _ in users}) > 5
    rows = [user_metrics(np.array(r, dtype=np.int64), t, ks) for r, t in users]
    got = mean_metrics(rows)
    for k in ks:
        per_user = [reference(r, t, k) for r, t in users]
        for n in NAMES:
            assert got[f"{n}@{k}"] == pytest.approx(sum(u[n] for u in per_user) / len(users))


def test_mean_metrics_known_answer() -> None:
    rows = [{"ndcg@10": 1.0, "recall@10": 0.5}, {"ndcg@10": 0.0, "recall@10": 0.25},
            {"ndcg@10": 0.2, "recall@10": 0.0}]  # fmt: skip
    assert mean_metrics(rows) == pytest.approx({"ndcg@10": 0.4, "recall@10": 0.25})
    assert mean_metrics([]) == {}
