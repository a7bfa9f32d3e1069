"""The artifact store contract on Azure Blob Storage, against a real Azurite."""

from __future__ import annotations

import uuid

import pytest

from recommndr.registry.store import BlobStore
from tests.artifact_store_contract import ArtifactStoreContract, StoreUnderTest

pytestmark = pytest.mark.integration


class TestBlobStore(ArtifactStoreContract):
    @pytest.fixture
    def subject(self, azurite: str, monkeypatch: pytest.MonkeyPatch) -> StoreUnderTest:
        monkeypatch.delenv("RECOMMNDR_BUNDLE_SIGNING_KEY", raising=False)
        store = BlobStore(azurite, f"contract-{uuid.uuid4().hex[:12]}")  # a fresh container per test

        def tamper(name: str, fname: str, data: bytes) -> None:
            store.container.upload_blob(f"{name}/{fname}", data, overwrite=True)

        return StoreUnderTest(store, tamper)
