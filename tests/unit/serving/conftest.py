from __future__ import annotations

from pathlib import Path

import pytest

from recommndr.params import TrainConfig
from recommndr.training.pipeline import train


@pytest.fixture(scope="session")
def challenger_artifacts(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different bundle (a smaller ranker) to serve as the challenger."""
    out = tmp_path_factory.mktemp("serving-challenger") / "art"
    train(tiny_dataset, out, TrainConfig.model_validate({"ranker": {"n_estimators": 20}}))
    return out
