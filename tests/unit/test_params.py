"""The parameter models: ``params.yaml``'s ``train`` section is parsed strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.unit


def test_config_typos_fail_loudly(tmp_path: Path) -> None:
    from recommndr.errors import UserInputError
    from recommndr.params import load_train_config

    p = tmp_path / "params.yaml"
    p.write_text("train:\n  als:\n    factor: 32\n")
    with pytest.raises(UserInputError, match="factor"):
        load_train_config(p)
