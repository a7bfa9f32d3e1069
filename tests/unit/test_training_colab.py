"""training_colab/: params_gpu.yaml is a TrainConfig, params.yaml's on the GPU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
COLAB = ROOT / "training_colab"
SCRIPT = COLAB / "train_colab.sh"
NOTEBOOK = COLAB / "recommndr_colab.ipynb"
URL = re.compile(r"https?://[^\s\"'`)<>\]]+")


def test_params_gpu_is_a_train_config() -> None:
    from recommndr.params import load_train_config

    cfg = load_train_config(COLAB / "params_gpu.yaml")
    assert cfg.als.use_gpu is True
    assert cfg.ranker.device == "gpu"


def test_params_gpu_is_params_yaml_on_the_gpu() -> None:
    """The CPU baseline (params_gpu.yaml with both parts on the CPU) is the pipeline's training."""
    from recommndr.params import load_train_config

    gpu = load_train_config(COLAB / "params_gpu.yaml")
    on_cpu = gpu.model_copy(
        update={
            "als": gpu.als.model_copy(update={"use_gpu": False}),
            "ranker": gpu.ranker.model_copy(update={"device": "cpu"}),
        }
    )
    assert on_cpu == load_train_config(ROOT / "params.yaml")
