"""The real API (``create_app`` under uvicorn, one process) with a fault a test can switch on while
it runs, for the live alert test: no production setting knows about faults.

    python -m tests.integration.faulty_api --artifacts DIR --port N --fault-file PATH

The fault file holds ``errors`` (every recommendation raises: a bug past the ranker's own fallback,
answered as a 500), ``slow`` (each takes 0.4 s more, over the 300 ms latency alert) or nothing.
It is read at each request, so one server serves the healthy run and then each fault.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

SLOW_S = 0.4


def install_fault(fault_file: Path) -> None:
    """Wrap ``ServingModel.recommend`` (loading warms it up first: faults start once serving)."""
    from recommndr.serving.model import ServingModel

    original = ServingModel.recommend

    def recommend(self: ServingModel, *args: Any, **kwargs: Any) -> Any:
        try:
            fault = fault_file.read_text().strip()
        except FileNotFoundError:
            fault = ""
        if fault == "errors":
            raise RuntimeError("injected fault: recommend fails")
        if fault == "slow":
            time.sleep(SLOW_S)
        return original(self, *args, **kwargs)

    ServingModel.recommend = recommend  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fault-file", type=Path, required=True)
    args = parser.parse_args()
    import uvicorn

    from recommndr.serving.app import create_app

    app = create_app(args.artifacts)
    install_fault(args.fault_file)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
