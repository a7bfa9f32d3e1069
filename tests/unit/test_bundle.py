"""The bundle's files: what each component writes is what it reads back, the file names and array
keys stay those that bundles already written carry, and the registry's list of a bundle's files
(``BUNDLE_FILES``) is what training writes."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from recommndr.arrays import load_arrays
from recommndr.bundle import Bundle
from recommndr.errors import ArtifactError
from recommndr.loading import load_bundle, rewrite_bundle
from recommndr.registry.artifacts import BUNDLE_FILES, MANIFEST

pytestmark = pytest.mark.unit

# The format: renaming a file or an array key orphans every bundle written before.
ARRAYS = {
    "catalog.npz": {"item_ids", "l1", "l2", "l3", "price", "created_us"},
    "als.npz": {"user_factors", "item_factors", "item_known", "user_ids", "reg"},
    "popularity.npz": {"pop", "new_arrival", "per_category"},
    "copurchase.npz": {"indptr", "nbr", "score", "support", "n_baskets"},
    "exclusions.npz": {"keys", "repeatable_l3"},
    "recent.npz": {"indptr", "items"},
    "similar.npz": {"nbr", "sim"},
}


def test_training_writes_exactly_the_registrys_bundle_files(artifacts: Path) -> None:
    assert {p.name for p in artifacts.iterdir()} == BUNDLE_FILES | {MANIFEST}
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
        assert set(z.files) == {f.name for f in fields(original.features)}
    for name in [*ARRAYS, "features.npz"]:  # every array mapped in place when loaded
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
        (again.als.user_factors, original.als.user_factors),
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


def test_a_rewritten_bundle_verifies_and_holds_the_same_model(artifacts: Path, tmp_path: Path) -> None:
    written = rewrite_bundle(artifacts, tmp_path / "again")
    original, again = load_bundle(artifacts), load_bundle(tmp_path / "again")  # hashes checked
    assert set(written["files"]) == BUNDLE_FILES and again.manifest == written
    assert {k: v for k, v in written.items() if k not in ("files", "versions")} == {
        k: v for k, v in original.manifest.items() if k not in ("files", "versions", "signature")
    }
    for name in Bundle.FILES | {"products.parquet"}:
        assert (tmp_path / "again" / name).is_file()
    np.testing.assert_array_equal(again.features.ui_keys, original.features.ui_keys)
    with pytest.raises(ArtifactError, match="not empty"):
        rewrite_bundle(artifacts, tmp_path / "again")
