"""The factor matrices as a bundle keeps them: int8 rows with a scale each (within half a step of
the float32 values), rows in another order; and the exact index over them stays exact with
respect to the vectors it is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recommndr.data.interactions import Interactions
from recommndr.params import TrainConfig
from recommndr.ranking.candidates import recent_items
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.base import Query
from recommndr.retrieval.rows import PermutedRows, QuantisedRows

pytestmark = pytest.mark.unit
CFG = TrainConfig()


def test_quantised_rows_are_within_half_a_step() -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(500, 16)) * np.exp(rng.normal(size=500))[:, None]).astype(np.float32)
    x[3] = 0.0  # a zero row stays zero
    q = QuantisedRows.quantise(x, block=64)
    assert q.codes.dtype == np.int8 and q.scales.dtype == np.float32 and q.shape == x.shape
    assert np.abs(q.codes).max() == 127
    err = np.abs(q[:] - x).max(axis=1)
    assert (err <= q.max_error() * (1 + 1e-6)).all()
    np.testing.assert_array_equal(q[3], np.zeros(16, np.float32))
    idx = np.array([7, 2, 7])
    np.testing.assert_array_equal(q[idx], q[:][idx])
    np.testing.assert_array_equal(q[5], q[:][5])
    np.testing.assert_array_equal(np.asarray(q), q[:])
    with pytest.raises(ValueError, match="int8"):
        QuantisedRows(q.codes.astype(np.int16), q.scales)


def test_permuted_rows_read_in_their_own_order() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((50, 4)).astype(np.float32)
    order = rng.permutation(50)
    p = PermutedRows(np.ascontiguousarray(x[order]), order)
    np.testing.assert_array_equal(np.asarray(p), x)
    np.testing.assert_array_equal(p[[4, 0, 4]], x[[4, 0, 4]])
    np.testing.assert_array_equal(p[9], x[9])
    with pytest.raises(ValueError, match="permutation"):
        PermutedRows(x, np.zeros(50, np.int64))


def test_a_saved_retriever_is_exact_with_respect_to_its_quantised_users(
    world_inter: Interactions, tmp_path: Path
) -> None:
    als = ALSRetriever.fit(world_inter, CFG.weights, CFG.als.model_copy(update={"factors": 16}), seed=1)
    als.save(tmp_path / "als.npz", world_inter.user_ids)
    loaded, user_ids = ALSRetriever.load(tmp_path / "als.npz")
    np.testing.assert_array_equal(user_ids, world_inter.user_ids)
    assert isinstance(loaded.user_factors, QuantisedRows) and isinstance(loaded.item_factors, PermutedRows)
    np.testing.assert_array_equal(np.asarray(loaded.item_factors), als.item_factors)
    ptr, items = recent_items(world_inter)
    qs = [Query(u, items[ptr[u] : ptr[u + 1]]) for u in range(world_inter.n_users)]
    qs += [Query(-1, items[:3]), Query(-1, np.zeros(0, np.int64))]
    scanned = loaded.retrieve(qs, 20)  # every product scored (the batch path)
    loaded.use_index()
    via_index = loaded.retrieve(qs, 20)
    for (a, sa), (b, sb) in zip(scanned, via_index, strict=True):
        assert a.tolist() == b.tolist()
        np.testing.assert_allclose(sa, sb, rtol=1e-5, atol=1e-6)
    # the fold-in of a new user reads the same item factors: the same vector as before saving
    np.testing.assert_allclose(loaded.user_vector(qs[-2]), als.user_vector(qs[-2]), rtol=1e-5, atol=1e-7)  # type: ignore[arg-type]
    # and the lists are the float32 model's but where quantisation moved a near tie
    ref = als.retrieve(qs, 20)
    same = np.mean(
        [
            len(set(a.tolist()) & set(b.tolist())) / max(len(a), 1)
            for (a, _), (b, _) in zip(ref, via_index, strict=True)
        ]
    )
    assert same >= 0.95
    # saved again, a loaded retriever writes the same arrays back
    loaded.save(tmp_path / "again.npz", user_ids)
    with np.load(tmp_path / "als.npz") as z1, np.load(tmp_path / "again.npz") as z2:
        assert set(z1.files) == set(z2.files)
        for k in z1.files:
            np.testing.assert_array_equal(z1[k], z2[k])
