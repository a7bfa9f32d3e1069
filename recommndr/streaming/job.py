"""The streaming feature job from the main environment: find it, start it, wait for it, stop it.

The job itself (``flink/job.py``) runs in its own virtual environment (``make flink-env``: PyFlink 2.0
pins clash with the main lock) with the repository root on ``PYTHONPATH``. :class:`FeatureJob`
starts it as a subprocess in a session of its own (the driver, Flink's JVM and its Python workers are
one process group), waits until Flink reports the job running (the JVM takes ~8 s, more on a busy
machine), and stops it (SIGTERM: the job cancels itself, its last checkpoint kept) or kills it
(``kill -9`` of the whole group, the crash the checkpoint tests simulate). ``recommndr stream job``,
the tests, the benchmark and ``make demo`` all use it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from recommndr.errors import ServiceUnavailableError
from recommndr.streaming.broker import free_port

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
JAR_NAMES = ("flink-connector-kafka.jar", "kafka-clients.jar")
START_TIMEOUT_S = 120.0


class FeatureJobError(ServiceUnavailableError):
    """The streaming job cannot be found, started or reached."""

    code = "feature_job_unavailable"


def flink_dir() -> Path:
    """The folder with ``job.py``, ``.venv`` and ``jars`` (``RECOMMNDR_FLINK_DIR``, else the checkout's ``flink/``)."""
    return Path(os.environ.get("RECOMMNDR_FLINK_DIR") or ROOT / "flink")


def flink_python(root: Path | None = None) -> Path:
    """The job's interpreter; raises :class:`FeatureJobError` ("run make flink-env") when the job's
    virtual environment or its connector jars are missing."""
    root = root or flink_dir()
    python = root / ".venv" / "bin" / "python"
    missing = [] if python.is_file() else [str(python)]
    missing += [str(root / "jars" / n) for n in JAR_NAMES if not (root / "jars" / n).is_file()]
    if not (root / "job.py").is_file():
        missing.append(str(root / "job.py"))
    if missing:
        raise FeatureJobError(
            f"the streaming job's environment is incomplete (missing {', '.join(missing)}): run make flink-env"
        )
    return python


def _seconds(value: float) -> str:
    return f"{value:g}s"


@dataclass
class FeatureJob:
    """One run of ``flink/job.py`` with these settings (see its ``--help``)."""

    bootstrap: str = "127.0.0.1:9092"
    topic: str = "recommndr-events"
    store: Literal["sqlite", "redis"] = "sqlite"
    store_path: Path = Path("data/online/features.db")
    redis_url: str = "redis://127.0.0.1:6379/0"
    checkpoint_dir: Path = Path("data/flink/checkpoints")
    group: str = "recommndr-feature-job"
    lateness_s: float = 600.0
    out_of_orderness_s: float = 5.0
    early_fire_s: float = 1.0
    checkpoint_interval_s: float = 30.0  # the job's default (flink/job.py)
    parallelism: int = 1
    startup: Literal["earliest", "latest"] = "earliest"
    metrics_port: int = 0
    rest_port: int = 0
    backfill: Sequence[Path] = ()
    sessions: bool = True  # the shoppers' sessions too (the user_session view)
    session_fire_s: float = 2.0  # the sessions' bundles: Flink ends one every 1-2x this
    catalogue: Path | None = None  # products file or data folder: the sessions' categories
    log_path: Path | None = None
    extra_args: Sequence[str] = ()
    security: Literal["plaintext", "sasl_ssl"] = "plaintext"  # sasl_ssl: Event Hubs (the password from
    username: str = "$ConnectionString"  # RECOMMNDR_EVENT_BROKER_PASSWORD in the environment, never argv)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def command(self) -> list[str]:
        if not self.rest_port:
            self.rest_port = free_port()
        root = flink_dir()
        cmd = [
            str(flink_python(root)), str(root / "job.py"),
            "--bootstrap", self.bootstrap, "--topic", self.topic, "--group", self.group,
            "--store", self.store, "--store-path", str(self.store_path.resolve()), "--redis-url", self.redis_url,
            "--checkpoint-dir", str(self.checkpoint_dir.resolve()),
            "--lateness", _seconds(self.lateness_s), "--out-of-orderness", _seconds(self.out_of_orderness_s),
            "--early-fire", _seconds(self.early_fire_s), "--session-fire", _seconds(self.session_fire_s), "--checkpoint-interval", _seconds(self.checkpoint_interval_s),
            "--parallelism", str(self.parallelism), "--startup", self.startup,
            "--metrics-port", str(self.metrics_port), "--rest-port", str(self.rest_port),
        ]  # fmt: skip
        if self.security == "sasl_ssl":
            cmd += ["--security", "sasl_ssl", "--username", self.username]
        cmd.append("--sessions" if self.sessions else "--no-sessions")
        if self.catalogue is not None:
            cmd += ["--catalogue", str(Path(self.catalogue).resolve())]
        if self.backfill:
            cmd += ["--backfill", *(str(Path(p).resolve()) for p in self.backfill)]
        return cmd + list(self.extra_args)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the workers import Beam at each start: keep its bytecode
        env.pop("COVERAGE_PROCESS_START", None)  # the job's venv has no coverage
        return env

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, timeout_s: float = START_TIMEOUT_S) -> FeatureJob:
        """Start the job (and wait until Flink runs it, with ``wait``)."""
        if self.running:
            return self
        cmd = self.command()
        out: Any = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                cmd, env=self.env(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        log.info("feature job started (pid %d, REST port %d)", self.proc.pid, self.rest_port)
        if wait:
            self.wait_running(timeout_s)
        return self

    def rest(self, path: str, timeout_s: float = 2.0) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.rest_port}{path}", timeout=timeout_s) as r:
            return json.loads(r.read())

    def state(self) -> str | None:
        """The Flink job's state (RUNNING, ...), None while its cluster does not answer."""
        try:
            jobs = self.rest("/jobs/overview").get("jobs", [])
        except (OSError, ValueError):
            return None
        states = [j.get("state") for j in jobs]
        return "RUNNING" if "RUNNING" in states else (states[-1] if states else None)

    def wait_running(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the job and all its tasks run; raises :class:`FeatureJobError` if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise FeatureJobError(f"the feature job exited at start (exit code {code}); see its log")
            try:
                jobs = self.rest("/jobs/overview").get("jobs", [])
                running = [j for j in jobs if j.get("state") == "RUNNING"]
                if running:
                    tasks = running[0].get("tasks", {})
                    if tasks.get("total") and tasks.get("running") == tasks.get("total"):
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        self.kill()
        raise FeatureJobError(f"the feature job was not running within {timeout_s:.0f} s")

    def checkpoints(self) -> int:
        """Completed checkpoints of the running job (0 when none or not reachable)."""
        try:
            jid = next(j["jid"] for j in self.rest("/jobs/overview")["jobs"] if j.get("state") == "RUNNING")
            return int(self.rest(f"/jobs/{jid}/checkpoints")["counts"]["completed"])
        except (OSError, ValueError, KeyError, StopIteration):
            return 0

    def wait_checkpoint(self, after: int = 0, timeout_s: float = 60.0) -> int:
        """Until more than ``after`` checkpoints completed; returns the count."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            n = self.checkpoints()
            if n > after:
                return n
            time.sleep(0.2)
        raise FeatureJobError(f"no checkpoint completed within {timeout_s:.0f} s")

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Stop cleanly: SIGTERM, the job cancels itself (its checkpoint kept); the whole group is
        killed if it has not exited within ``timeout_s``. Returns the driver's exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("the feature job did not stop within %.0f s: killed", timeout_s)
        self._reap()
        return proc.returncode

    def kill(self) -> None:
        """``kill -9`` of the driver, the JVM and the Python workers at once (a crash)."""
        self._signal_group(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self._signal_group(signal.SIGKILL)  # whatever of the group is left (JVM, workers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the group's last members go after the driver
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.proc = None

    def run_backfill(self, timeout_s: float = 300.0) -> None:
        """Run a ``--backfill`` job to its end; raises :class:`FeatureJobError` if it fails."""
        if not self.backfill:
            raise ValueError("no backfill files")
        self.start(wait=False)
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise FeatureJobError(f"the backfill did not finish within {timeout_s:.0f} s") from None
        self._reap()
        if code != 0:
            raise FeatureJobError(f"the backfill failed (exit code {code}); see its log")

    def __enter__(self) -> FeatureJob:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
