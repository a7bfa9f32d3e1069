"""One local retrain started by the API (``POST /models/retrain``, the ops page's Retrain button in
``make demo``): ``recommndr retrain --local --api <this API> --data <loop_retrain_data> --json``
run as a subprocess, whose canary then moves this API's traffic and the registry's aliases.

Off unless ``loop_retrain_data`` (the dataset) and ``loop_api_url`` (this API's own URL, never a
request's Host header) are set. Nothing of the request reaches the command line but the
validated fault name. At most one runs: the state lives in ``loop_retrain_dir/state.json``,
changed under an exclusive ``flock`` of a lock file beside it, so the API's worker processes
agree (the worker that started it owns the process; the others read the file). The process'
output goes through a reader thread into a log there that rotates once (``retrain.log`` and
``retrain.log.1``, together at most ``loop_retrain_log_bytes``); the ``--json`` line it ends with
is the outcome. The owner's shutdown stops it (SIGTERM to its process group, then SIGKILL); an
owner killed outright is noticed by the retrain itself (:func:`stop_when_owner_dies`), which then
stops as on SIGTERM.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from recommndr.config import Settings
from recommndr.errors import ConflictError, ServiceUnavailableError

log = logging.getLogger(__name__)
STATE, LOCK, LOG = "state.json", ".lock", "retrain.log"
TAIL_BYTES = 4096  # of the log, in each status
MAX_LINE = 1 << 20  # bytes: a longer line is logged in pieces and is no outcome
MAX_STATE = 1 << 20
STOP_WAIT_S = 10.0
DROP_ENV = ("PROMETHEUS_MULTIPROC_DIR",)  # the API's metrics folder is not the child's to write
OWNER_ENV = "RECOMMNDR_RETRAIN_OWNER_PID"  # the API worker that started the retrain: its parent


def stop_when_owner_dies(period_s: float = 1.0) -> threading.Thread | None:
    """In a retrain an API started (``OWNER_ENV`` holds the pid of that API worker, its parent):
    once the parent is gone — killed with SIGKILL, nothing stopped this process, which is then
    re-parented — send this process SIGTERM (once), which the command turns into the interrupt that sends
    the challenger's traffic back to 0 (where the API still answers) and ends the run, instead of
    running on unowned beside a retrain the restarted API may start. None when no API started it."""
    try:
        owner = int(os.environ.get(OWNER_ENV, ""))
    except ValueError:
        return None
    if os.getppid() != owner and _alive(owner):
        # a wrapper in between (loop_retrain_command): its parent is not the one to watch
        log.warning("this retrain's parent is not the API worker %d that started it: not watching it", owner)
        return None

    def watch() -> None:  # an owner gone before it began ends the loop at once
        while os.getppid() == owner:
            time.sleep(period_s)
        log.error("the API that started this retrain (pid %d) is gone: stopping", owner)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="retrain-owner", daemon=True)
    thread.start()
    return thread


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RotatingLog:
    """Lines appended to ``path``; past half of ``cap`` bytes it moves to ``path.1`` (replacing
    the one there) and starts again: both together stay under ``cap``."""

    def __init__(self, path: Path, cap: int) -> None:
        self.path, self.half = path, max(1024, cap // 2)
        self._f: IO[bytes] = path.open("ab")
        self._size = self._f.tell()

    def write(self, data: bytes) -> None:
        data = data[: self.half]
        if self._size + len(data) > self.half:
            self._f.close()
            self.path.replace(self.path.with_name(self.path.name + ".1"))
            self._f, self._size = self.path.open("ab"), 0
        self._f.write(data)
        self._f.flush()
        self._size += len(data)

    def close(self) -> None:
        self._f.close()


def log_tail(folder: Path, limit: int = TAIL_BYTES) -> str:
    """The last ``limit`` bytes of the log (across its rotation), from a line start."""
    raw = b""
    for name in (LOG, LOG + ".1"):
        if len(raw) >= limit:
            break
        try:
            with (folder / name).open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - (limit - len(raw))))
                raw = f.read() + raw
        except FileNotFoundError:
            continue
    if len(raw) >= limit and b"\n" in raw:
        raw = raw[raw.index(b"\n") + 1 :]
    return raw.decode("utf-8", errors="replace")


def outcome_of(line: bytes) -> dict[str, Any] | None:
    """The ``--json`` result of one whole output line, or None."""
    if not line.startswith(b"{") or not line.endswith(b"\n"):
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("outcome"), str) else None


class RetrainRunner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = Path(settings.loop_retrain_dir)
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    # ---- settings ----
    def off_reason(self) -> str | None:
        s = self.settings
        if s.loop_retrain_data is None:
            return "retrains from the API are off: RECOMMNDR_LOOP_RETRAIN_DATA (the dataset) is unset"
        if not s.loop_api_url:
            return "retrains from the API are off: RECOMMNDR_LOOP_API_URL (this API's own URL) is unset"
        return None

    def command(self, fault: str) -> list[str]:
        s = self.settings
        prefix = list(s.loop_retrain_command) or [sys.executable, "-m", "recommndr.cli"]
        cmd = [*prefix, "retrain", "--local", "--api", str(s.loop_api_url), "--data", str(s.loop_retrain_data),
               "--json", "--canary-fault", fault]  # fmt: skip
        if s.loop_retrain_step_seconds is not None:
            cmd += ["--step-seconds", f"{s.loop_retrain_step_seconds:g}"]
        return cmd

    # ---- the shared state ----
    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self) -> dict[str, Any] | None:
        try:
            with (self.folder / STATE).open("rb") as f:
                doc = json.loads(f.read(MAX_STATE))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("ignoring the retrain state %s: %s", self.folder / STATE, exc)
            return None
        return doc if isinstance(doc, dict) else None

    def _write(self, doc: dict[str, Any]) -> None:
        tmp = self.folder / f"{STATE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(self.folder / STATE)

    @staticmethod
    def _lost(doc: dict[str, Any]) -> bool:
        """A running retrain whose owner (an API worker) is gone: nobody will finish it."""
        return doc.get("state") == "running" and not _alive(doc.get("owner"))

    # ---- what the routes call (in a thread: they wait for a lock and read files) ----
    def status(self) -> dict[str, Any]:
        empty = {"started_at": None, "finished_at": None, "canary_fault": None, "outcome": None,
                 "returncode": None, "detail": None, "log_tail": ""}  # fmt: skip
        off = self.off_reason()
        if off is not None:
            return {**empty, "state": "off", "detail": off}
        doc = self._read()
        if doc is None:
            return {**empty, "state": "idle"}
        if self._lost(doc):
            doc = {**doc, "state": "failed", "detail": "the API process that ran it stopped"}
        out = {**empty, **{k: doc.get(k) for k in empty if k != "log_tail"}, "state": doc.get("state")}
        out["log_tail"] = log_tail(self.folder)
        return out

    def start(self, fault: str) -> dict[str, Any]:
        off = self.off_reason()
        if off is not None:
            raise ConflictError(off, code="retrain_off")
        with self._locked():
            doc = self._read()
            if doc is not None and doc.get("state") == "running" and not self._lost(doc):
                since = time.strftime("%H:%M:%S", time.localtime(float(doc.get("started_at") or 0)))
                raise ConflictError(
                    f"a retrain is already running (since {since}, pid {doc.get('pid')}); one at a time",
                    code="retrain_running",
                )
            for name in (LOG, LOG + ".1"):
                (self.folder / name).unlink(missing_ok=True)
            env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
            env[OWNER_ENV] = str(os.getpid())
            cmd = self.command(fault)
            try:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
            except OSError as exc:
                raise ServiceUnavailableError(
                    f"the retrain could not be started ({cmd[0]}: {exc.strerror})", code="retrain_unavailable"
                ) from exc
            doc = {"state": "running", "started_at": time.time(), "finished_at": None, "canary_fault": fault,
                   "outcome": None, "returncode": None, "detail": None, "pid": proc.pid,
                   "owner": os.getpid()}  # fmt: skip
            self._write(doc)
            self._proc = proc
            self._pump = threading.Thread(target=self._follow, args=(proc,), name="retrain-log", daemon=True)
            self._pump.start()
        log.warning("retrain started (pid %d, canary fault %s): %s", proc.pid, fault, " ".join(cmd))
        return self.status()

    def _follow(self, proc: subprocess.Popen[bytes]) -> None:
        """The reader thread: the output into the log, the outcome from it, the end into the state."""
        assert proc.stdout is not None
        outcome = None
        try:
            sink = RotatingLog(self.folder / LOG, self.settings.loop_retrain_log_bytes)
            try:
                while line := proc.stdout.readline(MAX_LINE):
                    sink.write(line)
                    outcome = outcome_of(line) or outcome
            finally:
                sink.close()
        except OSError as exc:  # the folder went away: drain, so the child never blocks on a full pipe
            log.error("the retrain's log cannot be written in %s: %s", self.folder, exc)
            while proc.stdout.read(65536):
                pass
        rc = proc.wait()
        finished = rc == 0 and outcome is not None
        detail = None if finished else f"exited with {rc}" + ("" if rc else " without a --json outcome")
        with self._locked():
            doc = self._read()
            if doc is None or doc.get("pid") != proc.pid:
                return
            doc.update(state="finished" if finished else "failed", finished_at=time.time(), outcome=outcome,
                       returncode=rc, detail=detail)  # fmt: skip
            self._write(doc)
        log.warning("retrain (pid %d) %s: %s", proc.pid, doc["state"], (outcome or {}).get("outcome", detail))

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """At the API's shutdown: the retrain this worker started, terminated, then killed."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        log.warning("stopping the retrain (pid %d): the API is shutting down", proc.pid)
        for sig, wait in ((signal.SIGTERM, wait_s), (signal.SIGKILL, wait_s)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if self._pump is not None:
            self._pump.join(timeout=wait_s)
