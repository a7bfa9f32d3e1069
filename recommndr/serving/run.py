"""Running the API under uvicorn from the command line: a quiet Ctrl-C, and the factory that each
worker process (``--workers N``) builds its app with."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


class _NoCancelledTraceback(logging.Filter):
    """A second Ctrl-C makes uvicorn exit at once, cancelling the app's lifespan, and Starlette
    reports that cancellation as a traceback. Accepted events are already on disk (202 = fsynced)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("Traceback") and text.rstrip().endswith("CancelledError"))


def quiet_ctrl_c() -> None:
    """uvicorn shuts down gracefully on Ctrl-C, then re-raises the signal to the handler it found:
    make that a no-op (Python's default turns it into a KeyboardInterrupt traceback)."""
    signal.signal(signal.SIGINT, lambda *_: None)
    logging.getLogger("uvicorn.error").addFilter(_NoCancelledTraceback())


def default_workers() -> int:
    """Two processes where there are two cores: a request is mostly Python holding the GIL, so a
    second process doubles throughput (measured: benchmarks/bench_serve.py). The workers share the
    model's arrays, mapped from the bundle's files (benchmarks/bench_memory.py: two take ~0.65 GB
    together at full scale, one ~0.45 GB); each has its own catalogue and Python heap (~0.16 GB)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def create_worker_app() -> FastAPI:
    """The app of one worker process (settings from the environment)."""
    from recommndr.serving.app import create_app  # here, not in the parent that spawns the workers

    quiet_ctrl_c()
    return create_app()
