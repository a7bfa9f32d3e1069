"""The API reading the streaming job's product windows from a real redis-server (Feast's Redis
layout, as the job writes them with ``RedisWindowStore``): /trending live with the windows' scores,
and back on the batch list, flagged and without a 5xx, when Redis stops."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from recommndr.config import get_settings
from recommndr.serving.app import create_app
from recommndr.serving.runtime import ServingState
from recommndr.streaming.windows import RedisWindowStore, Tile, tile_end_us

pytestmark = pytest.mark.integration
Redis = tuple[str, "subprocess.Popen[bytes]"]


def test_trending_reads_the_jobs_windows_from_redis_and_falls_back_when_it_stops(
    redis_server: Redis, artifacts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, proc = redis_server
    monkeypatch.setenv("RECOMMNDR_ONLINE_STORE", "redis")
    monkeypatch.setenv("RECOMMNDR_REDIS_URL", url)
    monkeypatch.setenv("RECOMMNDR_STREAM_REFRESH_S", "60")  # refreshed by hand
    monkeypatch.setenv("RECOMMNDR_STREAM_TIMEOUT_S", "0.5")
    get_settings.cache_clear()
    with TestClient(create_app(artifacts, tmp_path / "events")) as c:
        state: ServingState = c.app.state.recommndr  # type: ignore[attr-defined]
        batch = c.get("/trending").json()
        assert batch["source"] == "batch"
        m = state.slots.champion
        assert m is not None
        a, b = (int(i) for i in m.catalogue.item_ids[:2])
        job = RedisWindowStore(url)
        end = tile_end_us(time.time_ns() // 1000)
        job.write_tiles([Tile(a, end, 5, 0, 0), Tile(b, end, 40, 2, 1), Tile(999_999_999, end, 90, 0, 0)])
        assert state.stream.refresh().live
        r = c.get("/trending").json()
        want = sorted(job.read([a, b]).values(), key=lambda w: -w.trend)
        assert r["source"] == "live" and r["as_of"] is not None
        assert [(i["item_id"], i["score"]) for i in r["items"]] == [
            (w.item_id, round(w.trend, 6)) for w in want
        ]
        assert c.get("/recommendations/-1").json()["items"][0]["item_id"] == b  # the hour's hottest
        job.close()
        proc.terminate()
        proc.wait(timeout=10)
        assert not state.stream.refresh().live
        for path in ("/trending", "/popular", "/recommendations/-1", "/ready"):
            assert c.get(path).status_code == 200, path
        r = c.get("/trending").json()
        assert (r["source"], r["items"]) == ("batch", batch["items"])
        assert "window store error" in c.get("/ready").json()["trending"]
