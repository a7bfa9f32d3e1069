"""A 202 from ``POST /events`` means the event survives: proved against the real API processes
(``recommndr serve``), killed with SIGKILL, run as two workers appending at once, on a full disk
and on a folder it cannot write.

Each event carries a unique ``event_id`` and no request is retried, so an acknowledged id must be
in the log exactly once; an id whose request got no answer may be there (once) or not; an id whose
request got a 503 must not be there.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from recommndr.features.repo import read_event_log
from tests.ports import free_port

pytestmark = pytest.mark.integration

TORN = b'{"user_id":1,"item_id":2,"event_type":"vi'


def _serve_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("recommndr")  # the console script, as a user runs it
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "recommndr.cli"]


def _env(log_dir: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOMMNDR_")}
    env.update(
        OPENBLAS_NUM_THREADS="1",
        RECOMMNDR_EVENT_LOG_DIR=str(log_dir),
        RECOMMNDR_ONLINE_STORE="off",  # the log is under test, not the feature store
        RECOMMNDR_TRAFFIC_FILE=str(tmp / "traffic.json"),
        RECOMMNDR_RELOAD_INTERVAL_S="0",
    )
    return env


class Server:
    """``recommndr serve`` in its own process group, its output in a file."""

    def __init__(
        self,
        artifacts: Path,
        log_dir: Path,
        tmp: Path,
        port: int,
        workers: int = 1,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.workers = workers
        self.out = tmp / f"serve-{port}-{time.monotonic_ns()}.log"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [*_serve_cmd(), "serve", "--artifacts", str(artifacts), "--port", str(port),
                 "--workers", str(workers)],
                env=_env(log_dir, tmp), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=preexec,  # noqa: PLW1509  only given where no other thread of the test runs
            )  # fmt: skip

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_up(self, timeout: float = 120.0) -> None:
        """Until every worker has finished starting (models loaded, event log open)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited with {self.proc.returncode}:\n{self.output()}"
            try:
                with urllib.request.urlopen(f"{self.base}/metrics", timeout=5) as r:
                    if "recommndr_ready 1.0" in r.read().decode() and len(self.worker_pids()) == self.workers:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"serve not ready after {timeout:.0f} s:\n{self.output()}")

    def worker_pids(self) -> list[int]:
        if self.workers == 1:
            return [self.proc.pid]
        kids = psutil.Process(self.proc.pid).children()
        return [k.pid for k in kids if "spawn_main" in " ".join(k.cmdline())]

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Ctrl-C, as a user stops it: pending batches are written and answered first."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextlib.contextmanager
def serving(*args: Any, **kwargs: Any) -> Iterator[Server]:
    server = Server(*args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def _body(ids: list[str]) -> bytes:
    return json.dumps([{"user_id": i % 50, "item_id": i % 37, "event_type": "view", "event_id": eid}
                       for i, eid in enumerate(ids)]).encode()  # fmt: skip


def post_events(base: str, ids: list[str]) -> int | None:
    """POST the events once (never retried), on a new connection; the status, or None when no
    answer came."""
    req = urllib.request.Request(
        f"{base}/events", data=_body(ids), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            status: int = r.status
            return status
    except urllib.error.HTTPError as e:
        if e.code == 503:
            assert json.loads(e.read())["error"]["code"] == "events_unavailable"
        return e.code
    except OSError:  # refused, reset, timed out: the events may or may not be stored
        return None


class Outcomes:
    """What each event's request was answered, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.refused: set[str] = set()
        self.unknown: set[str] = set()
        self.other: list[int] = []

    def record(self, ids: list[str], status: int | None) -> None:
        with self.lock:
            if status == 202:
                self.acked.update(ids)
            elif status == 503:
                self.refused.update(ids)
            elif status is None:
                self.unknown.update(ids)
            else:
                self.other.append(status)


Post = Callable[[list[str]], "int | None"]


class KeepAlive:
    """One persistent HTTP/1.1 connection, so a test knows which worker process serves it."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        self.conn.request("GET", "/health")  # accepted by a worker once this is answered
        self.conn.getresponse().read()
        assert self.conn.sock is not None
        self.port: int = self.conn.sock.getsockname()[1]

    def post(self, ids: list[str]) -> int | None:
        try:
            self.conn.request("POST", "/events", _body(ids), {"content-type": "application/json"})
            r = self.conn.getresponse()
            r.read()
            return r.status
        except OSError:
            return None


class Streamer:
    """Threads posting batches of new, unique events until stopped, each thread with its own
    ``post`` and batch size."""

    def __init__(self, outcomes: Outcomes, posts: list[tuple[Post, int]]) -> None:
        self.outcomes = outcomes
        self.done = threading.Event()
        self.acked_by = [0] * len(posts)
        self.threads = [
            threading.Thread(target=self._loop, args=(k, post, n), daemon=True)
            for k, (post, n) in enumerate(posts)
        ]
        for t in self.threads:
            t.start()

    def _loop(self, k: int, post: Post, size: int) -> None:
        seq = 0
        while not self.done.is_set():
            ids = [f"t{k}-{seq}-{j}" for j in range(size)]
            seq += 1
            status = post(ids)
            self.acked_by[k] += len(ids) if status == 202 else 0
            self.outcomes.record(ids, status)
            if status is None:  # the server is down: do not spin
                time.sleep(0.02)

    def wait_acked(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.outcomes.acked) < n:
            assert time.monotonic() < deadline, f"only {len(self.outcomes.acked)} of {n} events acknowledged"
            time.sleep(0.05)

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(60)


def logged_ids(log_dir: Path) -> Counter[str]:
    """Every event id in the log; fails on a line that does not parse (torn, glued, interleaved)."""
    ids: Counter[str] = Counter()
    for f in sorted(log_dir.glob("events-*.jsonl")):
        data = f.read_bytes()
        assert not data or data.endswith(b"\n"), f"{f.name} ends in a torn line: {data[-120:]!r}"
        for n, line in enumerate(data.splitlines()):
            try:
                ids[json.loads(line)["event_id"]] += 1
            except ValueError as exc:
                pytest.fail(f"{f.name} line {n + 1} does not parse ({exc}): {line[:200]!r}")
    return ids


def check_log(log_dir: Path, outcomes: Outcomes) -> Counter[str]:
    ids = logged_ids(log_dir)
    missing = outcomes.acked - set(ids)
    assert not missing, f"{len(missing)} acknowledged events are not in the log, e.g. {sorted(missing)[:5]}"
    twice = {i: n for i, n in ids.items() if n > 1}
    assert not twice, f"events stored more than once: {list(twice.items())[:5]}"
    stray = set(ids) - outcomes.acked - outcomes.unknown
    assert not stray, f"events in the log that were refused or never sent: {sorted(stray)[:5]}"
    assert not outcomes.other, f"unexpected statuses: {Counter(outcomes.other)}"
    read = read_event_log(log_dir)  # the features job's reader reads the whole log
    assert read.skipped == 0 and read.events.height == sum(ids.values())
    return ids


@pytest.mark.slow
def test_every_acknowledged_event_survives_sigkill_and_restart(artifacts: Path, tmp_path: Path) -> None:
    log_dir, port, outcomes = tmp_path / "events", free_port(), Outcomes()
    first = Server(artifacts, log_dir, tmp_path, port)
    try:
        first.wait_up()
        # small batches from three threads; 400-event batches (~100 KB, many pages) from a fourth
        post: Post = functools.partial(post_events, first.base)
        streamer = Streamer(outcomes, [(post, 1), (post, 3), (post, 7), (post, 400)])
        streamer.wait_acked(2000)
        first.kill()  # mid-stream: requests in flight get no answer
    finally:
        first.stop()
    acked_before = len(outcomes.acked)
    # What a SIGKILL in the middle of a multi-page write leaves (the kernel stops a write between
    # pages on a fatal signal), made certain here: a torn last line, never acknowledged.
    day = sorted(log_dir.glob("events-*.jsonl"))[-1]
    with day.open("ab") as f:
        f.write(TORN)
    with serving(artifacts, log_dir, tmp_path, port) as second:  # same port: the threads carry on
        second.wait_up()
        streamer.wait_acked(acked_before + 1000)
        streamer.stop()
    assert second.proc.returncode == 0, second.output()
    check_log(log_dir, outcomes)
    torn = sorted(log_dir.glob("events-*.jsonl.torn-*"))
    assert torn and torn[-1].read_bytes().endswith(TORN), "the torn tail was not set aside"
    assert "torn line" in second.output()


def _by_worker(server: Server, port: int, per_worker: int) -> dict[int, list[KeepAlive]]:
    """Persistent connections, at least ``per_worker`` served by each worker process (the kernel
    hands a new connection to whichever worker accepts first)."""
    owner_of: dict[int, int] = {}  # client port -> worker pid
    by_pid: dict[int, list[KeepAlive]] = {p: [] for p in server.worker_pids()}
    for _ in range(200):
        if all(len(c) >= per_worker for c in by_pid.values()):
            return by_pid
        conn = KeepAlive(port)
        for pid in by_pid:
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.raddr and c.raddr.port == conn.port:
                    owner_of[conn.port] = pid
        owner = owner_of.get(conn.port)
        if owner is not None and len(by_pid[owner]) < per_worker:
            by_pid[owner].append(conn)
        else:
            conn.conn.close()
    pytest.fail(f"the workers never both accepted connections: {[len(c) for c in by_pid.values()]}")


@pytest.mark.slow
def test_two_workers_appending_at_once_lose_nothing(artifacts: Path, tmp_path: Path) -> None:
    log_dir, outcomes, port = tmp_path / "events", Outcomes(), free_port()
    with serving(artifacts, log_dir, tmp_path, port, workers=2) as server:
        server.wait_up()
        conns = _by_worker(server, port, per_worker=3)
        sizes = [1, 40, 250]  # each worker: tiny, mid and ~60 KB batches
        streamer = Streamer(
            outcomes, [(c.post, n) for cs in conns.values() for c, n in zip(cs, sizes, strict=True)]
        )
        streamer.wait_acked(8000)
        streamer.stop()
        for cs in conns.values():
            for c in cs:
                c.conn.close()
    assert server.proc.returncode == 0, server.output()
    assert all(streamer.acked_by), f"every connection (3 a worker) stored events: {streamer.acked_by}"
    check_log(log_dir, outcomes)
    assert not outcomes.unknown


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                       capture_output=True, text=True, check=False)  # fmt: skip
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the file-size-limit case runs")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def preexec() -> None:  # in the server process: writes past `limit` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]  # kept: the test raises the soft one again
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

    return preexec


@pytest.mark.parametrize("full", ["file_size_limit", "tmpfs"])
def test_a_full_disk_answers_503_and_acknowledges_nothing_it_did_not_store(
    artifacts: Path, tmp_path: Path, full: str
) -> None:
    limit = 64 * 1024
    with contextlib.ExitStack() as stack:
        if full == "tmpfs":
            disk = stack.enter_context(_tmpfs(tmp_path / "disk", "size=256k"))
            filler = disk / "filler"
            filler.write_bytes(b"\0" * (256 - 72) * 1024)  # about 72 KiB left for the log
            log_dir, preexec = disk / "events", None
        else:
            log_dir, preexec = tmp_path / "events", _limit_file_size(limit)
        outcomes = Outcomes()
        server = stack.enter_context(serving(artifacts, log_dir, tmp_path, free_port(), preexec=preexec))
        server.wait_up()
        refusals = 0
        for seq in range(200):  # ~5 KB a request: the disk is full after a dozen or so
            ids = [f"r{seq}-{j}" for j in range(20)]
            status = post_events(server.base, ids)
            outcomes.record(ids, status)
            refusals += status == 503
            if refusals == 3:
                break
        assert refusals == 3, f"no 503 after {len(outcomes.acked)} events were acknowledged"
        assert len(outcomes.acked) >= 100
        check_log(log_dir, outcomes)  # now, while it runs: no torn line, nothing refused is there
        if full == "tmpfs":
            filler.unlink()  # space again
        else:
            hard = resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE)[1]
            resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))
        ids = [f"after-{j}" for j in range(20)]
        status = post_events(server.base, ids)
        outcomes.record(ids, status)
        assert status == 202
        server.stop()
        assert server.proc.returncode == 0, server.output()
        check_log(log_dir, outcomes)


@pytest.mark.parametrize("where", ["under_a_file", "read_only_mount"])
def test_serve_refuses_to_start_on_a_folder_it_cannot_write(
    artifacts: Path, tmp_path: Path, where: str
) -> None:
    with contextlib.ExitStack() as stack:
        if where == "read_only_mount":
            log_dir = stack.enter_context(_tmpfs(tmp_path / "ro", "ro,size=64k"))
        else:
            (tmp_path / "taken").write_text("a file where the folder should be")
            log_dir = tmp_path / "taken" / "events"
        server = stack.enter_context(serving(artifacts, log_dir, tmp_path, free_port()))
        try:
            server.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve kept running on an unwritable event log folder:\n{server.output()}")
        out = server.output()
        assert server.proc.returncode != 0, out
        assert f"the event log folder {log_dir} cannot be written" in out and "RECOMMNDR_EVENT_LOG_DIR" in out
