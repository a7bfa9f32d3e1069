"""Running the API under uvicorn from the command line: a quiet Ctrl-C, and the factory that each
worker process (``--workers N``) builds its app with."""

from __future__ import annotations

import logging
import signal

from fastapi import FastAPI

from recommndr.serving.app import create_app


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


def create_worker_app() -> FastAPI:
    """The app of one worker process (settings from the environment)."""
    quiet_ctrl_c()
    return create_app()
