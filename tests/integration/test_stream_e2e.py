"""The whole streaming path, each part real and started here: ``POST /events`` → the API's producer →
a Tansu broker → the Flink feature job → the SQLite online store's product windows → the API's
snapshot → ``/trending``. A burst of views on one product puts it first in the live list within
seconds; without the job (never started) the list is the batch one, flagged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from recommndr.streaming.broker import LocalBroker, create_topic
from recommndr.streaming.job import FeatureJob
from tests.integration.test_event_broker import TOPIC, Api, get, post

pytestmark = [pytest.mark.integration, pytest.mark.stream]


def views(prefix: str, items: list[int], n: int) -> list[dict[str, Any]]:
    return [{"user_id": 1000 + i, "item_id": items[i % len(items)], "event_type": "view",
             "event_id": f"{prefix}-{i}"} for i in range(n)]  # fmt: skip


def test_a_burst_of_views_lifts_a_product_in_live_trending_within_seconds(
    artifacts: Path, tmp_path: Path
) -> None:
    db = tmp_path / "online.db"
    with LocalBroker() as broker:
        create_topic(broker.bootstrap, TOPIC, 2)
        api = Api(artifacts, tmp_path, broker.bootstrap, RECOMMNDR_ONLINE_STORE="sqlite",
                  RECOMMNDR_ONLINE_STORE_PATH=str(db), RECOMMNDR_STREAM_REFRESH_S="0.2")  # fmt: skip
        try:
            items = [p["item_id"] for p in get(api.base, "/popular?k=12")["items"]]  # products it serves
            hot, rest = items[-1], items[:-1]
            before = get(api.base, "/trending?k=5")
            assert before["source"] == "batch" and before["as_of"] is None  # no job has written yet
            job = FeatureJob(
                bootstrap=broker.bootstrap, topic=TOPIC, store="sqlite", store_path=db,
                checkpoint_dir=tmp_path / "chk", metrics_port=0, log_path=tmp_path / "job.log",
            )  # fmt: skip
            with job:
                for k in range(3):  # steady traffic on the others, several batches
                    assert post(api.base, views(f"bg{k}", rest, 60))[0] == 202
                deadline = time.monotonic() + 60
                while get(api.base, "/trending?k=5")["source"] != "live":
                    assert time.monotonic() < deadline, (tmp_path / "job.log").read_text()[-3000:]
                    time.sleep(0.3)
                assert hot not in [p["item_id"] for p in get(api.base, "/trending?k=5")["items"]]
                t0 = time.monotonic()
                assert post(api.base, views("burst", [hot], 200))[0] == 202
                while True:
                    live = get(api.base, "/trending?k=5")
                    if live["items"] and live["items"][0]["item_id"] == hot:
                        break
                    assert time.monotonic() - t0 < 15, live
                    time.sleep(0.2)
                assert live["source"] == "live" and live["as_of"] is not None
                assert time.monotonic() - t0 < 15  # within seconds of the 202
        finally:
            api.stop()
