"""A bundle folder with every file a bundle holds (arbitrary bytes: the manifest checks do not
parse them), written by the real ``write_manifest``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.artifact_store_contract import make_bundle

KEY = "k" * 40  # a test key, long enough for the settings' check


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """An unsigned bundle (no signing key is configured in the tests)."""
    return make_bundle(tmp_path / "bundle")


@pytest.fixture
def signed_bundle(tmp_path: Path) -> Path:
    return make_bundle(tmp_path / "signed", key=KEY)


@pytest.fixture(autouse=True)
def _no_configured_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that want a configured key set RECOMMNDR_BUNDLE_SIGNING_KEY themselves."""
    monkeypatch.delenv("RECOMMNDR_BUNDLE_SIGNING_KEY", raising=False)
