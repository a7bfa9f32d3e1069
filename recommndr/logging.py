"""Logging set-up for entry points only (the CLI, the API, benchmarks). Library modules just call
``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

# httpx logs every request at INFO (the traffic simulator makes hundreds a second)
_NOISY = ("great_expectations", "urllib3", "filelock", "dvc", "matplotlib", "httpx", "httpcore")


def configure_logging(level: str = "INFO") -> None:
    """Send log records to stderr through rich; idempotent."""
    root = logging.getLogger()
    if any(isinstance(h, RichHandler) for h in root.handlers):
        root.setLevel(level)
        return
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    # Libraries that set their own loggers' levels at import: keep only their warnings.
    handler.addFilter(lambda r: r.levelno >= logging.WARNING or not r.name.startswith(_NOISY))
    root.addHandler(handler)
    root.setLevel(level)
