"""The producer's settings mapping (plaintext for a local broker, SASL_SSL + PLAIN for Event
Hubs; the password never in a repr or a log) and the spool drainer's lock (one worker drains)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recommndr.config import ConfigError, Settings, get_settings
from recommndr.streaming.producer import SpoolDrainer, describe, kafka_config, producer_config

pytestmark = pytest.mark.unit

SECRET = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=s3cr3tKEY="


def test_plaintext_is_the_local_broker() -> None:
    s = Settings(event_broker="127.0.0.1:9092")
    assert kafka_config(s) == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "PLAINTEXT"}
    p = producer_config(s)
    assert p["acks"] == "all" and p["linger.ms"] == 5 and p["max.in.flight.requests.per.connection"] == 1
    assert s.event_topic == "recommndr-events" and s.spool_dir == Path("data/events/spool")


def test_sasl_ssl_is_event_hubs_and_the_password_stays_secret(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings(
        event_broker="ns.servicebus.windows.net:9093", event_broker_security="sasl_ssl",
        event_broker_password=SECRET,
    )  # fmt: skip
    assert kafka_config(s) == {
        "bootstrap.servers": "ns.servicebus.windows.net:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "$ConnectionString",
        "sasl.password": SECRET,
    }
    assert SECRET not in repr(s) and SECRET not in str(s.model_dump()) and SECRET not in describe(s)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("recommndr").info("settings %s %s", s, describe(s))
    assert SECRET not in caplog.text


def test_sasl_ssl_without_a_password_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOMMNDR_EVENT_BROKER", "ns.servicebus.windows.net:9093")
    monkeypatch.setenv("RECOMMNDR_EVENT_BROKER_SECURITY", "sasl_ssl")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="RECOMMNDR_EVENT_BROKER_PASSWORD"):
        get_settings()
    monkeypatch.setenv("RECOMMNDR_EVENT_BROKER_SECURITY", "kerberos")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="RECOMMNDR_EVENT_BROKER_SECURITY"):
        get_settings()


def test_no_broker_means_no_kafka_config() -> None:
    with pytest.raises(ValueError, match="event_broker"):
        kafka_config(Settings())


class _Nop:
    def inc(self, amount: float = 1) -> None: ...

    def set(self, value: float) -> None: ...


def test_only_one_process_drains_a_spool_folder(tmp_path: Path) -> None:
    from recommndr.streaming.producer import ProducerMetrics

    m = ProducerMetrics(_Nop(), _Nop(), _Nop(), _Nop(), _Nop())

    async def ship(lines: list[bytes]) -> bool:
        return True

    first, second = SpoolDrainer(tmp_path, ship, m), SpoolDrainer(tmp_path, ship, m)
    assert first.try_lock() and not second.try_lock()  # flock: separate open files conflict
    first.close()
    assert second.try_lock()
    second.close()


def test_ready_shows_the_failures_kind_and_only_the_log_its_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/ready is public: a broker's address (or an Event Hubs namespace) in the client's message
    stays in the log."""
    from types import SimpleNamespace

    from confluent_kafka import KafkaError

    from recommndr.streaming.producer import BrokerProducer, ProducerMetrics

    m = ProducerMetrics(_Nop(), _Nop(), _Nop(), _Nop(), _Nop())
    p = BrokerProducer(
        Settings(event_broker="10.1.2.3:9093"), SimpleNamespace(root=tmp_path), m, lambda *a, **k: ([], [])
    )  # type: ignore[arg-type]
    assert p.status()["broker"] == "up"
    message = "10.1.2.3:9093/bootstrap: Connect to ipv4#10.1.2.3:9093 failed: Connection refused"
    with caplog.at_level(logging.WARNING, logger="recommndr"):
        p._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, message))
    assert p.status()["broker"] == "down (_ALL_BROKERS_DOWN)"
    assert message in caplog.text


def _lines(path: Path, first: int, n: int, torn: bytes = b"") -> int:
    """Appends ``n`` event-like lines (ids from ``first``) and ``torn`` to ``path``; their bytes."""
    data = (
        b"".join(b'{"event_id":"e%08d","user_id":%02d}\n' % (i, i % 97) for i in range(first, first + n))
        + torn
    )
    with path.open("ab") as f:
        f.write(data)
    return len(data)


def test_the_backlog_count_reads_only_what_changed_and_counts_as_a_full_count(tmp_path: Path) -> None:
    from recommndr.streaming.producer import BacklogCounter, Offset, count_backlog

    a, b = tmp_path / "events-2026-12-01.jsonl", tmp_path / "events-2026-12-02.jsonl"
    _lines(a, 0, 20_000)
    _lines(b, 20_000, 5_000)
    c = BacklogCounter()

    def check(off: Offset, expected: int) -> int:
        """The count, as a full count has it; returns the bytes it read."""
        read = c.read_bytes
        assert c.count(tmp_path, off) == count_backlog(tmp_path, off) == expected
        return c.read_bytes - read

    assert check(Offset(), 25_000) >= a.stat().st_size + b.stat().st_size  # the first count reads it all
    appended = _lines(b, 30_000, 10)
    assert check(Offset(), 25_010) <= appended + 2048  # then only the new bytes (and a few to check)
    assert check(Offset(), 25_010) <= 2048  # nothing new: nothing to count
    line = len(a.read_bytes()) // 20_000
    assert check(Offset(a.name, 300 * line), 24_710) <= 300 * line + 4096  # the offset, first seen
    assert check(Offset(a.name, 600 * line), 24_410) <= 300 * line + 4096  # it moved on: what it passed
    a.unlink()  # shipped whole: removed
    assert check(Offset(b.name, 0), 5_010) <= 4096
    # a torn tail is not a line until the rest of it comes
    _lines(b, 40_000, 2, torn=b'{"event_id":"torn"')
    assert check(Offset(b.name, 0), 5_012) <= 4096
    with b.open("ab") as f:
        f.write(b"}\n")
    assert check(Offset(b.name, 0), 5_013) <= 4096
    # a failed batch cut back, then more appended: counted again from its start, not past its old end
    size = b.stat().st_size
    _lines(b, 50_000, 50)
    assert check(Offset(b.name, 0), 5_063) <= 8192
    with b.open("r+b") as f:
        f.truncate(size)
    _lines(b, 60_000, 80)
    assert check(Offset(b.name, 0), 5_093) >= size  # longer than it was, yet not the file counted
    _lines(a, 70_000, 7)  # a file again
    assert check(Offset(b.name, 0), 5_100) >= a.stat().st_size
    # shipped and removed, the name made anew (it may get the inode back): counted from its start
    b.unlink()
    _lines(b, 80_000, 30_000)
    assert check(Offset(b.name, 40 * line), 30_007 - 40) >= b.stat().st_size
