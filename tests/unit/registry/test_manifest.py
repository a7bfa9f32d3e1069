"""The manifest: only a bundle's own file names, the whole set of them, and (with a signing key)
an HMAC signature that whoever can write the bundle's folder or container cannot forge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from recommndr.config import Settings, get_settings
from recommndr.registry.artifacts import (
    BUNDLE_FILES,
    MANIFEST,
    ArtifactError,
    read_manifest,
    sha256,
    write_manifest,
)
from tests.unit.registry.conftest import KEY

pytestmark = pytest.mark.unit


def _edit(root: Path, change: Any) -> None:
    m = json.loads((root / MANIFEST).read_text())
    change(m)
    (root / MANIFEST).write_text(json.dumps(m, indent=2))


@pytest.mark.parametrize("bad", ["../evil", "../../evil", "/tmp/abs", "sub/ranker.onnx", "notes.txt"])
def test_a_manifest_naming_a_foreign_file_is_refused(bundle: Path, bad: str) -> None:
    _edit(bundle, lambda m: m["files"].__setitem__(bad, "0" * 64))
    with pytest.raises(ArtifactError, match="not part of a bundle") as err:
        read_manifest(bundle)
    assert repr(bad) in str(err.value)
    with pytest.raises(ArtifactError, match="not part of a bundle"):
        read_manifest(bundle, verify=False)  # names are checked even without the hashes


def test_a_manifest_lacking_bundle_files_is_refused(bundle: Path) -> None:
    _edit(bundle, lambda m: m["files"].pop("ranker.onnx"))
    with pytest.raises(ArtifactError, match=r"lacks bundle files \['ranker.onnx'\]"):
        read_manifest(bundle)
    _edit(bundle, lambda m: m["files"].__setitem__("ranker.onnx", ["not", "a", "hash"]))
    with pytest.raises(ArtifactError, match=r"\['ranker.onnx'\] have no valid SHA-256"):
        read_manifest(bundle)
    _edit(bundle, lambda m: m.__setitem__("files", {}))
    with pytest.raises(ArtifactError, match="lacks bundle files"):
        read_manifest(bundle)
    _edit(bundle, lambda m: m.pop("files"))
    with pytest.raises(ArtifactError, match="no 'files' table"):
        read_manifest(bundle)
    (bundle / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_manifest(bundle)


def test_write_manifest_lists_only_bundle_files(bundle: Path) -> None:
    (bundle / "metrics.json").write_text("{}")  # written beside the bundle by `recommndr train`
    (bundle / "retrieval_int8.onnx").write_bytes(b"int8 index of an older version")
    m = write_manifest(bundle, {})
    assert set(m["files"]) == BUNDLE_FILES | {"retrieval_int8.onnx"}
    assert read_manifest(bundle)["files"] == m["files"]
    (bundle / "similar.npz").unlink()
    with pytest.raises(ArtifactError, match=r"lacks bundle files \['similar.npz'\]"):
        write_manifest(bundle, {})


def test_signed_manifest_loads_with_its_key(signed_bundle: Path) -> None:
    m = read_manifest(signed_bundle, key=KEY)
    assert m["signature"]["alg"] == "HMAC-SHA256" and len(m["signature"]["mac"]) == 64
    assert m["config"] == {"seed": ""}


def test_tampered_hash_is_refused_when_a_key_is_set(signed_bundle: Path) -> None:
    # whoever can write the folder swaps a file and puts its new hash in the manifest
    (signed_bundle / "ranker.onnx").write_bytes(b"an attacker's model")
    _edit(
        signed_bundle, lambda m: m["files"].__setitem__("ranker.onnx", sha256(signed_bundle / "ranker.onnx"))
    )
    read_manifest(signed_bundle)  # no key configured: the hashes alone cannot tell
    with pytest.raises(ArtifactError, match="signature is wrong"):
        read_manifest(signed_bundle, key=KEY)
    with pytest.raises(ArtifactError, match="signature is wrong"):
        read_manifest(signed_bundle, key=KEY, only=("catalog.npz",))  # the popularity fallback too


def test_other_tampering_and_wrong_key_are_refused(signed_bundle: Path) -> None:
    _edit(signed_bundle, lambda m: m["config"].__setitem__("seed", "x"))
    with pytest.raises(ArtifactError, match="signature is wrong"):
        read_manifest(signed_bundle, key=KEY)
    write_manifest(signed_bundle, {}, key=KEY)
    with pytest.raises(ArtifactError, match="signature is wrong"):
        read_manifest(signed_bundle, key="another key, also long enough to be one")
    _edit(signed_bundle, lambda m: m["signature"].__setitem__("alg", "none"))
    with pytest.raises(ArtifactError, match="only HMAC-SHA256"):
        read_manifest(signed_bundle, key=KEY)


def test_unsigned_manifest_is_refused_when_a_key_is_configured(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_manifest(bundle)  # no key configured: unsigned bundles are accepted
    monkeypatch.setenv("RECOMMNDR_BUNDLE_SIGNING_KEY", KEY)
    get_settings.cache_clear()
    with pytest.raises(ArtifactError, match="is not signed"):
        read_manifest(bundle)
    write_manifest(bundle, {"config": {}})  # training signs with the configured key
    assert read_manifest(bundle)["signature"]["alg"] == "HMAC-SHA256"
    read_manifest(bundle, key=KEY)


def test_signing_key_must_be_long_enough() -> None:
    with pytest.raises(ValidationError, match="needs at least 32"):
        Settings(bundle_signing_key="short")
    assert Settings(bundle_signing_key=KEY).bundle_signing_key == KEY
