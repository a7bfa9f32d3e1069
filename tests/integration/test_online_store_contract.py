"""The online-store contract (``tests/online_store_contract.py``) against a real redis-server; the
SQLite store runs the same tests in ``tests/unit/features/test_online.py``."""

from __future__ import annotations

import subprocess

import pytest

from tests.online_store_contract import OnlineStoreContract, StoreSpec

pytestmark = pytest.mark.integration


class TestRedisOnlineStore(OnlineStoreContract):
    @pytest.fixture
    def spec(self, redis_server: tuple[str, subprocess.Popen[bytes]]) -> StoreSpec:
        return StoreSpec("redis", url=redis_server[0])
