"""The local artifact store: it publishes only a bundle that verifies, only the bundle's own
files, and takes only relative bundle names (the same names the blob store takes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recommndr.registry.artifacts import BUNDLE_FILES, MANIFEST, ArtifactError, read_manifest
from recommndr.registry.store import LocalStore, check_bundle_name

pytestmark = pytest.mark.unit


def test_publish_copies_the_bundle_files_only(bundle: Path, tmp_path: Path) -> None:
    (bundle / "metrics.json").write_text("{}")  # beside the bundle, not in its manifest
    store = LocalStore(tmp_path / "store")
    store.publish(bundle, "shop/champion")
    got = store.fetch("shop/champion", tmp_path / "cache")
    assert got == tmp_path / "store" / "shop" / "champion"
    assert {p.name for p in got.iterdir()} == BUNDLE_FILES | {MANIFEST}
    assert read_manifest(got) == read_manifest(bundle)


def test_publish_refuses_a_bundle_that_does_not_verify(bundle: Path, tmp_path: Path) -> None:
    (bundle / "ranker.onnx").write_bytes(b"changed after training")
    with pytest.raises(ArtifactError, match=r"ranker\.onnx does not match its hash"):
        LocalStore(tmp_path / "store").publish(bundle, "champion")
    assert not (tmp_path / "store" / "champion").exists()


@pytest.mark.parametrize("name", ["../x", "a/../../x", "absolute", "", ".", "a//b", "a\\..\\x"])
def test_bundle_names_stay_inside_the_store(bundle: Path, tmp_path: Path, name: str) -> None:
    if name == "absolute":  # under tmp_path, so that a regression writes nowhere else
        name = str(tmp_path / "x")
    with pytest.raises(ArtifactError, match="is not a relative name"):
        check_bundle_name(name)
    store = LocalStore(tmp_path / "store")
    with pytest.raises(ArtifactError, match="is not a relative name"):
        store.publish(bundle, name)
    with pytest.raises(ArtifactError, match="is not a relative name"):
        store.fetch(name, tmp_path / "cache")
    assert not (tmp_path / "x").exists() and not (tmp_path / "store").exists()
    assert json.loads((bundle / MANIFEST).read_text())  # the bundle itself is untouched
