"""The artifact store contract on the local folder store (the Azurite run is in
``tests/integration/test_blob_store_contract.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recommndr.registry.store import LocalStore
from tests.artifact_store_contract import ArtifactStoreContract, StoreUnderTest

pytestmark = pytest.mark.unit


class TestLocalStore(ArtifactStoreContract):
    @pytest.fixture
    def subject(self, tmp_path: Path) -> StoreUnderTest:
        root = tmp_path / "store"

        def tamper(name: str, fname: str, data: bytes) -> None:
            (root / name / fname).write_bytes(data)

        return StoreUnderTest(LocalStore(root), tamper)
