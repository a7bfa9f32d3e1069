"""The feature job's pieces that need no JVM: its options, checkpoint choice, SQL text, metric
selection, the main-side launcher, the CLI's refusal without ``make flink-env``, the heartbeat."""

from __future__ import annotations

import os
import time
import urllib.parse
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from recommndr.cli import app
from recommndr.streaming.job import FeatureJob, FeatureJobError, flink_python
from recommndr.streaming.windows import SqliteWindowStore, Tile
from tests.flink_job import load_flink_job

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def job() -> ModuleType:
    return load_flink_job()


def test_durations(job: ModuleType) -> None:
    assert [job.duration_s(t) for t in ("500ms", "5s", "10min", "2m", "1h", "3")] == [
        0.5,
        5,
        600,
        120,
        3600,
        3,
    ]
    a = job.parse_args(["--lateness", "2min", "--early-fire", "250ms"])
    assert (a.lateness, a.early_fire, a.out_of_orderness, a.checkpoint_interval) == (120, 0.25, 5, 30)
    with pytest.raises(SystemExit):
        job.parse_args(["--early-fire", "0s"])
    with pytest.raises(SystemExit):
        job.parse_args(["--backfill", "/no/such/file"])


def test_newest_checkpoint_and_pruning(job: ModuleType, tmp_path: Path) -> None:
    assert job.latest_checkpoint(tmp_path) is None
    for jid, n, age in (("old", 7, 30), ("new", 2, 10), ("new", 3, 5)):
        d = tmp_path / jid / f"chk-{n}"
        d.mkdir(parents=True)
        (d / "_metadata").write_bytes(b"x")
        os.utime(d / "_metadata", (time.time() - age, time.time() - age))
    (tmp_path / "new" / "chk-4").mkdir()  # in progress: no _metadata yet
    best = job.latest_checkpoint(tmp_path)
    assert best == tmp_path / "new" / "chk-3"
    job.prune_checkpoints(tmp_path, best)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]


def test_sql_text(job: ModuleType, tmp_path: Path) -> None:
    a = job.parse_args(["--topic", "it's", "--out-of-orderness", "2500ms"])
    ddl = job.kafka_table_ddl(a)
    assert (
        "'topic' = 'it''s'" in ddl
        and "INTERVAL '2.500' SECOND" in ddl
        and "TO_TIMESTAMP_LTZ(ts_ms, 3)" in ddl
    )
    ddls = job.file_table_ddls([tmp_path / "a.jsonl", tmp_path], 5)
    assert len(ddls) == 3 and ddls[-1].startswith(
        "CREATE TEMPORARY VIEW events AS SELECT * FROM events_file_0 UNION"
    )
    assert "COUNT(DISTINCT event_id)" in job.TILES_SQL and " views" not in job.TILES_SQL  # reserved word
    with pytest.raises(SystemExit):  # Event Hubs without its connection string
        job.kafka_table_ddl(job.parse_args(["--security", "sasl_ssl"]))
    marks = job.session_marks_sql(600)
    # no window per shopper: each event's mark to the function, late exactly as the windows'
    assert "GROUP BY" not in marks and "session_marks(COALESCE(user_id, -1)," in marks
    assert "+ 659999, 3))) < 0" in marks and "CURRENT_WATERMARK(rowtime) <" in marks
    a = job.parse_args([])
    assert a.sessions and a.session_fire == 2.0 and not job.parse_args(["--no-sessions"]).sessions
    # a backfill's files are split over the subtasks: with sessions, two could write one shopper
    with pytest.raises(SystemExit):
        job.parse_args(["--backfill", str(tmp_path), "--parallelism", "2"])
    assert (
        job.parse_args(["--backfill", str(tmp_path), "--parallelism", "2", "--no-sessions"]).parallelism == 2
    )
    (tmp_path / "junk.csv").write_text("x\n1\n")
    for bad in (["--session-fire", "0"], ["--early-fire", "0"], ["--catalogue", str(tmp_path / "junk.csv")]):
        with pytest.raises(SystemExit):
            job.parse_args(bad)


def test_metric_selection(job: ModuleType) -> None:
    keep = [
        "Source__events[1].numRecordsOut", "Source__events[1].pendingRecords",
        "Source__events[1].KafkaSourceReader.KafkaConsumer.records-lag-max",
        "GroupWindowAggregate[4].currentInputWatermark", "tile-sink.recommndr.write_le_3",
    ]  # fmt: skip
    drop = [
        "Calc[2].numRecordsOut",
        "numRecordsOut",
        "Calc[5].currentInputWatermark",
        "tile-sink.numRecordsOut",
    ]
    assert [job.wanted_metric(m) for m in keep + drop] == [True] * len(keep) + [False] * len(drop)


def test_launcher_needs_the_flink_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOMMNDR_FLINK_DIR", str(tmp_path))
    with pytest.raises(FeatureJobError, match="run make flink-env"):
        flink_python()
    result = CliRunner().invoke(app, ["stream", "job", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 2 and "make flink-env" in result.output


def test_launcher_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    (tmp_path / "jars").mkdir()
    for name in ("flink-connector-kafka.jar", "kafka-clients.jar"):
        (tmp_path / "jars" / name).write_bytes(b"")
    (tmp_path / "job.py").write_text("")
    monkeypatch.setenv("RECOMMNDR_FLINK_DIR", str(tmp_path))
    j = FeatureJob(bootstrap="b:1", store="redis", lateness_s=90, backfill=[Path("x.jsonl")], rest_port=5)
    cmd = j.command()
    assert cmd[:2] == [str(tmp_path / ".venv/bin/python"), str(tmp_path / "job.py")]
    assert cmd[cmd.index("--lateness") + 1] == "90s" and cmd[cmd.index("--store") + 1] == "redis"
    assert cmd[cmd.index("--checkpoint-interval") + 1] == "30s", "the job's own default"
    assert cmd[-2:] == [
        "--backfill",
        str(Path("x.jsonl").resolve()),
    ]  # the job runs from the repo root and cmd[cmd.index("--rest-port") + 1] == "5"
    assert "PYTHONDONTWRITEBYTECODE" not in j.env() and str(ROOT) in j.env()["PYTHONPATH"]
    assert "--security" not in cmd
    assert "--sessions" in cmd and cmd[cmd.index("--session-fire") + 1] == "2s" and "--catalogue" not in cmd
    off = FeatureJob(sessions=False, catalogue=Path("data/demo"), rest_port=5).command()
    assert "--no-sessions" in off and off[off.index("--catalogue") + 1] == str(Path("data/demo").resolve())
    hubs = FeatureJob(bootstrap="ns.servicebus.windows.net:9093", security="sasl_ssl", rest_port=5).command()
    assert (
        hubs[hubs.index("--security") + 1] == "sasl_ssl"
        and hubs[hubs.index("--username") + 1] == "$ConnectionString"
    )


def test_heartbeat_moves_the_wall_time_not_the_clock(tmp_path: Path) -> None:
    store = SqliteWindowStore(tmp_path / "w.db")
    store.heartbeat()
    first = store.status()
    assert first is not None and first.as_of_us == 0
    store.write_tiles([Tile(1, 120_000_000, 1, 0, 0)])
    time.sleep(0.01)
    store.heartbeat()
    after = store.status()
    assert after is not None and after.as_of_us == 120_000_000 and after.updated_us > first.updated_us
    store.close()


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, k: int) -> None:
        self.n += k


class _Group:
    def __init__(self) -> None:
        self.counters: dict[str, _Counter] = {}

    def counter(self, name: str) -> _Counter:
        return self.counters.setdefault(name, _Counter())


def test_a_store_outage_is_retried_in_place_any_other_write_error_fails_the_task(
    job: ModuleType, tmp_path: Path
) -> None:
    """An outage (a locked file, a refused connection) holds the write until it ends; any other
    error is raised at once, so Flink restarts the task instead of it retrying for good."""
    import sqlite3

    group = _Group()
    metrics = job.WriteMetrics(group)
    metrics.retry_s = 0.001
    held = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    held.execute("CREATE TABLE t (a)")
    held.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(tmp_path / "x.db", timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked") as locked:
        other.execute("INSERT INTO t VALUES (1)")
    held.close()
    other.close()
    failures: list[Exception] = [locked.value, ConnectionRefusedError()]

    def flaky(x: int) -> int:
        if failures:
            raise failures.pop(0)
        return x * 2

    assert metrics.write("session", flaky, 21) == 42
    assert group.counters["write_errors"].n == 2 and group.counters["write_count"].n == 1

    calls = []

    def broken(x: int) -> int:
        calls.append(x)
        if len(calls) > 2:  # retried: fail the test rather than loop
            raise AssertionError("a ValueError was retried")
        raise ValueError("not a tile of a shopper's session: (-1, 5)")

    with pytest.raises(ValueError, match="not a tile"):
        metrics.write("session", broken, 1)
    assert calls == [1] and group.counters["write_errors"].n == 3 and group.counters["write_count"].n == 1


class _Rest:
    """Flink's REST API as the driver's gate reads it: the job's vertices, its restarts, the
    sources' broker connections."""

    def __init__(self, job: ModuleType) -> None:
        self.mod = job
        self.status = "RUNNING"
        self.restarts = 0
        self.connections: float | None = 2.0
        self.records: float | None = 0.0
        self.pending: float | None = 0.0
        self.fail = False
        self.plans = 0
        self.jid = "j1"

    def job(self) -> tuple[str, str, list[dict[str, str]]]:
        if self.fail:
            raise OSError("connection refused")
        return self.jid, "RUNNING", [{"id": "v1", "name": "Source: events", "status": self.status}]

    def get(self, path: str) -> list[dict[str, str]]:
        assert path == f"/jobs/{self.jid}/metrics?get=numRestarts"
        return [{"id": "numRestarts", "value": str(self.restarts)}]

    def sources(self, jid: str, vertices: list[dict[str, str]]) -> dict[str, Any]:
        f = self.mod.SourceFigures(self.connections, self.records, self.pending)
        return {"v1": f, "v2": self.mod.SourceFigures(2.0, 0.0, 5.0)}  # v2: the sessions', stalled

    def window_sources(self, jid: str) -> set[str]:
        self.plans += 1
        return {"v1"}


def test_the_heartbeat_is_held_while_events_cannot_flow(
    job: ModuleType, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Held while a task is not running, for hold_s after any restart (a task failing at every
    try runs for seconds in between, the job RUNNING), and while a source lost the broker; let
    through when the REST API cannot tell."""
    rest = _Rest(job)
    gate = job.BeatGate(rest)
    now = [1000.0]
    monkeypatch.setattr(job.time, "monotonic", lambda: now[0])
    assert gate.check("j1") is None
    rest.status, rest.restarts = "DEPLOYING", 1  # restarting (seen while the tasks deploy)
    assert gate.check("j1") == "a task is deploying"
    now[0] += 2 * gate.hold_s  # a long restart delay: the hold starts once the tasks run again
    rest.status = "RUNNING"
    assert "restarted" in (gate.check("j1") or "")
    now[0] += gate.hold_s - 1
    rest.fail = True  # the REST API not answering inside the hold: still held
    assert "restarted" in (gate.check("j1") or "")
    rest.fail = False
    assert "restarted" in (gate.check("j1") or "")
    now[0] += 2
    assert gate.check("j1") is None
    rest.connections = 0.0
    assert gate.check("j1") == "a Kafka source lost the broker"
    rest.connections = None  # no figure (yet): beat
    assert gate.check("j1") is None
    rest.fail = True
    assert gate.check("j1") is None
    assert "heartbeat paused: a Kafka source lost the broker" in caplog.text
    assert "heartbeat resumed" in caplog.text


def test_the_heartbeat_is_held_while_the_windows_source_stalls_with_events_waiting(
    job: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held once the windows' source has emitted nothing for stuck_s while events waited for it
    all that time; not for an idle topic, not for a source that moves, however slowly, and not
    for a stalled source that is not the windows' (v2, the sessions')."""
    rest = _Rest(job)
    gate = job.BeatGate(rest)
    now = [1000.0]
    monkeypatch.setattr(job.time, "monotonic", lambda: now[0])

    def at(dt: float, records: float, pending: float) -> str | None:
        now[0] += dt
        rest.records, rest.pending = records, pending
        return gate.check("j1")

    assert at(0, 100, 0) is None
    assert at(gate.stuck_s * 3, 100, 0) is None  # an idle topic: nothing to read
    assert at(1, 100, 40) is None  # events arrive: the stall clock starts now, not at the last record
    assert at(gate.stuck_s - 2, 100, 40) is None
    assert (at(2, 100, 40) or "").startswith("the windows' source has read nothing for 30 s with 40 events")
    assert at(1, 101, 39) is None  # it moved
    for _ in range(10):  # slowly, but it moves
        assert at(gate.stuck_s - 1, rest.records + 1, 500) is None
    assert at(gate.stuck_s - 1, rest.records, 500) is None
    assert at(2, rest.records, 0) is None  # all read since the last look (the figure lags): not a stall
    assert at(1, rest.records, 500) is None  # waiting again: a clock from now
    assert at(gate.stuck_s - 2, rest.records, 500) is None
    assert at(1, rest.records, 450) is None  # fewer waiting, none emitted: junk read and dropped, a move
    assert at(gate.stuck_s - 1, rest.records, 450) is None
    assert (at(2, rest.records, 450) or "").startswith("the windows' source has read nothing")
    rest.restarts = 1  # a restart: its sources count from 0; held for hold_s, then a clock of its own
    rest.records = 0
    assert "restarted" in (gate.check("j1") or "")
    assert at(gate.hold_s + 1, 0, 450) is None
    assert at(gate.stuck_s - 1, 0, 450) is None
    assert (at(2, 0, 450) or "").startswith("the windows' source has read nothing")
    rest.records, rest.pending = None, 30.0  # no figure: cannot be told
    assert at(gate.stuck_s * 2, None, 30.0) is None
    assert rest.plans == 1  # the plan is read once per job
    rest.jid, rest.restarts = "j2", 0  # another job (the driver started it anew): its plan read again
    assert gate.check("j2") is None and rest.plans == 2


def test_the_rest_reader_queries_the_metrics_it_wants_with_their_aggregates(job: ModuleType) -> None:
    """``metrics`` lists a vertex's metric ids, keeps those its filter wants and asks for them with
    the aggregates named; ``source_connections`` is the fewest connections of any source vertex's
    subtasks (non-source vertices and values that are not numbers left out; None without any)."""
    asked: list[str] = []
    conn = "KafkaSourceReader.KafkaConsumer.connection-count"
    listed = {  # as a job of 2026-12-06 lists them (some left out)
        "src1": [f"Source__events[1].{conn}", "numRecordsOut", "Calc[2].numRecordsOut",
                 "Source__events[1].numRecordsOut", "Source__events[1].pendingRecords"],
        "src2": [f"Source__events[7].{conn}", "Calc[8].numRecordsOut"],
        "calc": [f"GroupWindowAggregate[4].{conn}"],
    }  # fmt: skip
    values = {"src1": "2.0", "src2": "0.0", "calc": "0.0"}

    class Rest(job.FlinkRest):  # type: ignore[misc,name-defined]
        def get(self, path: str) -> list[dict[str, str]]:
            asked.append(path)
            vid = path.split("/")[4]
            if path.endswith("/subtasks/metrics"):
                return [{"id": m} for m in listed[vid]]
            query = path.partition("?get=")[2]
            ids, _, agg = query.partition("&agg=")
            return [
                {"id": m, **dict.fromkeys(agg.split(","), values[vid])}
                for m in urllib.parse.unquote(ids).split(",")
            ]

    rest = Rest(0)
    assert rest.metrics("j", "src1") == {
        "Source__events[1].numRecordsOut": {
            "id": "Source__events[1].numRecordsOut",
            "sum": "2.0",
            "max": "2.0",
        },
        "Source__events[1].pendingRecords": {
            "id": "Source__events[1].pendingRecords",
            "sum": "2.0",
            "max": "2.0",
        },
    }
    assert asked[-1] == (
        "/jobs/j/vertices/src1/subtasks/metrics?get=Source__events%5B1%5D.numRecordsOut,"
        "Source__events%5B1%5D.pendingRecords&agg=sum,max"
    )
    vertices = [{"id": "src1", "name": "Source: events"}, {"id": "calc", "name": "Calc"}]
    assert rest.source_connections("j", vertices) == 2.0
    assert rest.source_connections("j", [*vertices, {"id": "src2", "name": "Source: events 2"}]) == 0.0
    assert asked[-1] == f"/jobs/j/vertices/src2/subtasks/metrics?get=Source__events%5B7%5D.{conn}&agg=min,sum"
    assert not any("/calc/" in p for p in asked)  # not a source: not asked
    values["src1"] = "NaN"
    assert rest.source_connections("j", vertices) is None
    values.update(src1="7.0", src2="3.0")
    figs = rest.sources("j", [*vertices, {"id": "src2", "name": "Source: events 2"}])
    assert figs["src1"] == job.SourceFigures(connections=7.0, records=7.0, pending=7.0)
    assert figs["src2"] == job.SourceFigures(connections=3.0)
    assert rest.source_connections("j", [{"id": "calc", "name": "Calc"}]) is None
