"""``flink/job.py`` as a module for the tests (the standard library only at import: PyFlink is
imported when the job is built), loaded once per test process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PATH = Path(__file__).resolve().parents[1] / "flink" / "job.py"


def load_flink_job() -> ModuleType:
    name = "flink_job"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PATH)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # as a dataclass's module must be
        spec.loader.exec_module(mod)
    return sys.modules[name]
