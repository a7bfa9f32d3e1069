"""The bundle's files: what each component writes is what it reads back, the file names and array
keys are the format's (the current one written; bundles of format 1, written before the arrays
were mapped and narrowed, still load), and the registry's list of a bundle's files
(``BUNDLE_FILES``) is what training writes."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recommndr.arrays import load_arrays
from recommndr.bundle import FORMAT, Bundle
from recommndr.errors import ArtifactError
from recommndr.loading import load_bundle, rewrite_bundle
from recommndr.monitoring.reference import FILE as REFERENCE
from recommndr.ranking.candidates import queries_for
from recommndr.ranking.features import FEATURES, FeatureTables
from recommndr.ranking.two_stage import TwoStageRecommender, candidate_features
from recommndr.registry.artifacts import BUNDLE_FILES, MANIFEST, OPTIONAL_BUNDLE_FILES
from recommndr.retrieval.index import NormBoundIndex
from recommndr.retrieval.rows import QuantisedRows

pytestmark = pytest.mark.unit

# The format: renaming a file or an array key orphans every bundle written before (a change is a
# new manifest "format" whose reader also reads the old keys: FORMAT_1 below stays readable).
FORMAT_1 = {
    "catalog.npz": {"item_ids", "l1", "l2", "l3", "price", "created_us"},
    "als.npz": {"user_factors", "item_factors", "item_known", "user_ids", "reg"},
    "popularity.npz": {"pop", "new_arrival", "per_category"},
    "copurchase.npz": {"indptr", "nbr", "score", "support", "n_baskets"},
    "exclusions.npz": {"keys", "repeatable_l3"},
    "recent.npz": {"indptr", "items"},
    "similar.npz": {"nbr", "sim"},
}
ARRAYS = {  # format 2
    **FORMAT_1,
    "als.npz": {"user_codes", "user_scales", "user_ids", "item_rows", "item_order", "index_norms",
                "item_known", "reg", "gram"},
}  # fmt: skip
FEATURES_2 = {f.name for f in fields(FeatureTables)} - {"ui_last_us", "ui_days_since", "ui_keys"} | {
    "ui_days_since_log", "ui_keys_low", "ui_keys_starts"}  # fmt: skip


def test_training_writes_exactly_the_registrys_bundle_files(artifacts: Path) -> None:
    # the monitoring reference is optional to readers (earlier bundles lack it); training writes it
    assert REFERENCE in OPTIONAL_BUNDLE_FILES
    assert {p.name for p in artifacts.iterdir()} == BUNDLE_FILES | {MANIFEST, REFERENCE}
    assert Bundle.FILES <= BUNDLE_FILES
    assert set(Bundle.POPULARITY_FILES) <= Bundle.FILES


def test_save_writes_the_same_format_that_load_reads(artifacts: Path, tmp_path: Path) -> None:
    original = load_bundle(artifacts)
    entries = original.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == Bundle.FILES
    for name, keys in ARRAYS.items():
        with np.load(tmp_path / name) as z:
            assert set(z.files) == keys, name
    with np.load(tmp_path / "features.npz") as z:
        assert set(z.files) == FEATURES_2
    for name in [*ARRAYS, "features.npz"]:
        assert all(a.ctypes.data % 64 == 0 for a in load_arrays(tmp_path / name).values() if a.size), name
    # what save() hands the manifest is what training recorded there
    assert entries == {k: original.manifest[k] for k in entries}
    again = Bundle.load(tmp_path, {**original.manifest, **entries})
    assert again.config == original.config
    assert again.catalogue.category_names() == original.catalogue.category_names()
    for f in ("item_ids", "l1", "l2", "l3", "price", "created_us"):
        np.testing.assert_array_equal(getattr(again.catalogue, f), getattr(original.catalogue, f))
    for a, b in [
        (again.user_ids, original.user_ids),
        (again.recent_indptr, original.recent_indptr),
        (again.recent_items, original.recent_items),
        (again.als.user_factors[:], original.als.user_factors[:]),
        (again.als.item_factors, original.als.item_factors),
        (again.popularity.pop, original.popularity.pop),
        (again.copurchase.score, original.copurchase.score),
        (again.exclusions.keys, original.exclusions.keys),
        (again.similar.nbr, original.similar.nbr),
        (again.features.ui_keys, original.features.ui_keys),
    ]:
        np.testing.assert_array_equal(a, b)
    assert (tmp_path / "ranker.onnx").read_bytes() == (artifacts / "ranker.onnx").read_bytes()
    X = np.random.default_rng(0).random((5, len(original.manifest["features"])), dtype=np.float32)
    np.testing.assert_array_equal(again.ranker.score(X), original.ranker.score(X))
    cat, pop = Bundle.load_popularity(tmp_path, original.manifest)
    np.testing.assert_array_equal(cat.l3, original.catalogue.l3)
    np.testing.assert_array_equal(pop.popular(10)[0], original.popularity.popular(10)[0])


def test_a_bundle_of_another_format_is_a_clear_error(artifacts: Path, tmp_path: Path) -> None:
    load_bundle(artifacts).save(tmp_path)
    manifest = load_bundle(artifacts).manifest
    np.savez(tmp_path / "copurchase.npz", indptr=np.zeros(1, np.int64))  # a key missing
    with pytest.raises(ArtifactError, match=r"cannot be read.*older recommndr"):
        Bundle.load(tmp_path, manifest)


def test_a_manifest_of_a_later_format_is_refused(artifacts: Path) -> None:
    manifest = {**load_bundle(artifacts).manifest, "format": FORMAT + 1}
    with pytest.raises(
        ArtifactError, match=rf"format is {FORMAT + 1}; this recommndr reads formats 1 to {FORMAT}"
    ):
        Bundle.load(artifacts, manifest)


def save_format_1(self: Bundle, folder: Path) -> dict[str, Any]:
    """``Bundle.save`` as recommndr wrote bundles before format 2 (kept here verbatim in effect:
    ``np.savez``, float32 user factors, int64 tables, the last event time of each user x product)."""
    folder.mkdir(parents=True, exist_ok=True)
    c = self.catalogue
    np.savez(folder / "catalog.npz", item_ids=c.item_ids, l1=c.l1, l2=c.l2, l3=c.l3, price=c.price,
             created_us=c.created_us)  # fmt: skip
    a = self.als
    np.savez(folder / "als.npz", user_factors=a.user_factors, item_factors=a.item_factors,
             item_known=a.item_known, user_ids=self.user_ids, reg=np.float64(a.reg))  # fmt: skip
    p = self.popularity
    np.savez(folder / "popularity.npz", pop=p.pop, new_arrival=p.new_arrival, per_category=p.per_category)
    cp = self.copurchase
    np.savez(folder / "copurchase.npz", indptr=cp.indptr, nbr=cp.nbr, score=cp.score, support=cp.support,
             n_baskets=cp.n_baskets)  # fmt: skip
    np.savez(
        folder / "exclusions.npz", keys=self.exclusions.keys, repeatable_l3=self.exclusions.repeatable_l3
    )
    np.savez(folder / "recent.npz", indptr=self.recent_indptr, items=self.recent_items)
    np.savez(folder / "similar.npz", nbr=self.similar.nbr, sim=self.similar.sim)
    t = self.features
    np.savez(folder / "features.npz", **{f.name: np.asarray(getattr(t, f.name)) for f in fields(t)
                                         if f.name != "ui_days_since"})  # fmt: skip
    self.ranker.save(folder / "ranker.onnx")
    return {"config": self.config.model_dump(), "categories": c.category_names(), "features": list(FEATURES),
            "users": int(self.user_ids.shape[0]), "items": c.n_items}  # fmt: skip


@pytest.fixture(scope="module")
def format_1(plain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle written as before format 2, trained on the loyal-shopper world."""
    from recommndr.params import TrainConfig
    from recommndr.training.pipeline import train

    out = tmp_path_factory.mktemp("format1") / "art"
    cfg = TrainConfig.model_validate({"holdout_days": 7, "label_days": 14, "als": {"factors": 16},
                                      "ranker": {"n_estimators": 20, "min_child_samples": 5}})  # fmt: skip
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Bundle, "save", save_format_1)
        train(plain_dir, out, cfg)
    return out


def test_a_format_1_bundle_loads_and_rewrites_to_the_same_model(format_1: Path, tmp_path: Path) -> None:
    assert json.loads((format_1 / MANIFEST).read_text())["format"] == 1
    for name, keys in FORMAT_1.items():
        with np.load(format_1 / name) as z:
            assert set(z.files) == keys, name
    old = load_bundle(format_1)
    assert isinstance(old.als.user_factors, np.ndarray) and old.als.user_factors.dtype == np.float32
    assert old.features.ui_last_us is not None
    written = rewrite_bundle(format_1, tmp_path / "v2")
    assert written["format"] == FORMAT and set(written["files"]) == BUNDLE_FILES | {REFERENCE}
    new = load_bundle(tmp_path / "v2")
    # the user factors: int8 codes, each value within half a step of the float32 one
    users = new.als.user_factors
    assert isinstance(users, QuantisedRows) and users.codes.dtype == np.int8
    err = np.abs(users[:] - old.als.user_factors).max(axis=1)
    assert (err <= users.max_error() * (1 + 1e-6)).all() and err.max() > 0
    np.testing.assert_array_equal(new.als.item_factors, old.als.item_factors)
    # the stored scan order is the index's own
    new.als.use_index()
    built = NormBoundIndex(np.asarray(old.als.item_factors), old.als.item_known)
    assert new.als.index is not None
    np.testing.assert_array_equal(new.als.index.items, built.items)
    np.testing.assert_array_equal(new.als.index.factors, built.factors)
    np.testing.assert_array_equal(new.als.index.norms, built.norms)
    # the rewritten tables give the same feature bits for every user's candidates
    assert new.features.ui_last_us is None and new.features.ui_views.dtype == np.uint8
    queries = queries_for(np.arange(old.user_ids.shape[0]), old.recent_indptr, old.recent_items)
    cands = old.candidate_generator().generate(queries)
    np.testing.assert_array_equal(
        candidate_features(new.features, queries, cands), candidate_features(old.features, queries, cands)
    )
    np.testing.assert_array_equal(new.similar.nbr, old.similar.nbr)
    np.testing.assert_array_equal(new.recent_items, old.recent_items)
    # and the two-stage lists: the same but where quantised user factors moved a tie
    a = TwoStageRecommender(old.candidate_generator(), old.features, old.ranker).rank(queries, 10)
    b = TwoStageRecommender(new.candidate_generator(), new.features, new.ranker).rank(queries, 10)
    same = np.mean(
        [len(set(x.items.tolist()) & set(y.items.tolist())) / 10 for x, y in zip(a, b, strict=True)]
    )
    assert same >= 0.95


def test_a_rewritten_bundle_verifies_and_holds_the_same_model(artifacts: Path, tmp_path: Path) -> None:
    written = rewrite_bundle(artifacts, tmp_path / "again")
    original, again = load_bundle(artifacts), load_bundle(tmp_path / "again")  # hashes checked
    assert set(written["files"]) == BUNDLE_FILES | {REFERENCE} and again.manifest == written
    assert {k: v for k, v in written.items() if k not in ("files", "versions")} == {
        k: v for k, v in original.manifest.items() if k not in ("files", "versions", "signature")
    }
    for name in Bundle.FILES | {"products.parquet"}:
        assert (tmp_path / "again" / name).is_file()
    np.testing.assert_array_equal(again.features.ui_keys, original.features.ui_keys)
    with pytest.raises(ArtifactError, match="not empty"):
        rewrite_bundle(artifacts, tmp_path / "again")
