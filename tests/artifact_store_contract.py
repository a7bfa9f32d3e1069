"""The contract every artifact store (a local folder, Azure Blob Storage through Azurite) passes,
as implicit's ``RecommenderBaseTestMixin`` does for its models: a backend's test class subclasses
``ArtifactStoreContract`` and provides the ``subject`` fixture; every test here then runs against
that backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from recommndr.registry.artifacts import BUNDLE_FILES, MANIFEST, ArtifactError, read_manifest, write_manifest
from recommndr.registry.store import ArtifactStore


def make_bundle(out: Path, key: str | None = None, seed: str = "") -> Path:
    """A folder with every file a bundle holds (arbitrary bytes: the manifest checks do not parse
    them) and the real manifest over them."""
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(BUNDLE_FILES):
        (out / name).write_bytes(f"{seed}{name} content\n".encode())
    write_manifest(out, {"config": {"seed": seed}}, key=key)
    return out


@dataclass
class StoreUnderTest:
    store: ArtifactStore
    tamper: Callable[[str, str, bytes], None]  # (bundle name, file name, new bytes) inside the store


class ArtifactStoreContract:
    @pytest.fixture
    def subject(self, tmp_path: Path) -> StoreUnderTest:
        raise NotImplementedError("a backend's test class provides the store under test")

    def test_a_published_bundle_is_fetched_whole_and_verifies(
        self, subject: StoreUnderTest, tmp_path: Path
    ) -> None:
        src = make_bundle(tmp_path / "src", seed="one")
        subject.store.publish(src, "champion")
        got = subject.store.fetch("champion", tmp_path / "cache")
        manifest = read_manifest(got)  # every hash checked
        assert set(manifest["files"]) == {p.name for p in src.iterdir()} - {MANIFEST}
        for name in manifest["files"]:
            assert (got / name).read_bytes() == (src / name).read_bytes()

    def test_an_unknown_bundle_is_a_clear_error(self, subject: StoreUnderTest, tmp_path: Path) -> None:
        with pytest.raises(ArtifactError, match="no bundle 'nothing-here'"):
            subject.store.fetch("nothing-here", tmp_path / "cache")

    def test_publishing_again_replaces_the_bundle(self, subject: StoreUnderTest, tmp_path: Path) -> None:
        subject.store.publish(make_bundle(tmp_path / "v1", seed="v1"), "champion")
        subject.store.publish(make_bundle(tmp_path / "v2", seed="v2"), "champion")
        got = subject.store.fetch("champion", tmp_path / "cache")
        assert read_manifest(got)["config"] == {"seed": "v2"}
        assert (got / "als.npz").read_bytes().startswith(b"v2")

    def test_a_bundle_that_does_not_verify_is_never_published(
        self, subject: StoreUnderTest, tmp_path: Path
    ) -> None:
        good = make_bundle(tmp_path / "good", seed="good")
        subject.store.publish(good, "champion")
        bad = make_bundle(tmp_path / "bad", seed="bad")
        (bad / "ranker.onnx").write_bytes(b"changed after the manifest was written")
        with pytest.raises(ArtifactError, match=r"ranker\.onnx"):
            subject.store.publish(bad, "champion")
        assert read_manifest(subject.store.fetch("champion", tmp_path / "cache"))["config"] == {
            "seed": "good"
        }

    def test_a_file_changed_inside_the_store_is_refused(
        self, subject: StoreUnderTest, tmp_path: Path
    ) -> None:
        subject.store.publish(make_bundle(tmp_path / "src"), "champion")
        subject.tamper("champion", "ranker.onnx", b"not the ranker that was published")
        with pytest.raises(ArtifactError, match=r"ranker\.onnx"):
            read_manifest(subject.store.fetch("champion", tmp_path / "cache"))

    @pytest.mark.parametrize("name", ["../outside", "/absolute", "a/../../x", ""])
    def test_names_stay_inside_the_store(self, subject: StoreUnderTest, tmp_path: Path, name: str) -> None:
        src = make_bundle(tmp_path / "src")
        with pytest.raises(ArtifactError, match="not a relative name"):
            subject.store.publish(src, name)
        with pytest.raises(ArtifactError, match="not a relative name"):
            subject.store.fetch(name, tmp_path / "cache")
