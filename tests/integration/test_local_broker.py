"""The local Tansu broker: started on a free port, topics created once, messages through it, a
taken port and a missing binary refused with a message, stopped for good."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from recommndr.streaming.broker import BrokerError, LocalBroker, create_topic, tansu_binary

pytestmark = pytest.mark.integration


def test_a_local_broker_carries_messages_and_stops(tmp_path: Path) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    with LocalBroker(log_path=tmp_path / "tansu.log") as broker:
        create_topic(broker.bootstrap, "t", 2)
        create_topic(broker.bootstrap, "t", 2)  # already there: fine
        p = Producer({"bootstrap.servers": broker.bootstrap})
        for i in range(10):
            p.produce("t", f"m{i}".encode(), partition=i % 2)
            p.flush(10)  # one batch each: Tansu moves the high-watermark per batch
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False})
        c.assign([TopicPartition("t", 0, 0), TopicPartition("t", 1, 0)])
        got = set()
        for _ in range(100):
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.add(m.value().decode())
            if len(got) == 10:
                break
        c.close()
        assert got == {f"m{i}" for i in range(10)}
        with pytest.raises(BrokerError, match="is taken"):
            LocalBroker(port=broker.port).start()
        port = broker.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        pass


def test_a_missing_binary_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RECOMMNDR_TANSU", str(tmp_path / "nope"))
    with pytest.raises(BrokerError, match=r"RECOMMNDR_TANSU=.*not an executable"):
        tansu_binary()
