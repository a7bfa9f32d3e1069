from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from recommndr.config import Settings, get_settings

pytestmark = pytest.mark.unit


def test_settings_read_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECOMMNDR_DATA_DIR", "/srv/shop-data")
    monkeypatch.setenv("RECOMMNDR_LOG_LEVEL", "DEBUG")
    get_settings.cache_clear()
    s = get_settings()
    assert s.data_dir == Path("/srv/shop-data")
    assert s.log_level == "DEBUG"
    assert get_settings() is s  # cached


def test_settings_reject_unknown_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="data_dirr"):
        Settings(data_dirr="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="log_level"):
        Settings(log_level="LOUD")  # type: ignore[arg-type]
