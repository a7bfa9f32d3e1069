"""Parameter models: the ``train`` section of ``params.yaml``, parsed strictly (a typo fails).

A leaf module (pydantic, yaml and ``errors`` only): every model (retrieval, similarity, ranking),
the bundle, the registry's tracking and training take their parameters from here without
importing each other. ``recommndr/config.py`` is the other kind of configuration: the process's
``Settings`` (environment variables), not a model's parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from recommndr.errors import UserInputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventWeights(_Strict):
    view: float = 1.0
    add_to_cart: float = 4.0
    purchase: float = 8.0


class ALSConfig(_Strict):
    factors: int = Field(64, ge=4, le=512)
    iterations: int = Field(15, ge=1, le=100)
    regularization: float = Field(0.05, gt=0)
    alpha: float = Field(2.0, gt=0, description="confidence = 1 + alpha * log1p(weighted, decayed count)")
    half_life_days: float = Field(90.0, gt=0, description="age decay of an interaction's weight")
    use_gpu: bool = False
    threads: int = Field(0, ge=0, description="0: all cores")


class PopularityConfig(_Strict):
    half_life_days: float = Field(7.0, gt=0)
    new_arrival_days: float = Field(30.0, gt=0, description="products this young count as new arrivals")
    per_category: int = Field(200, ge=10)


class CopurchaseConfig(_Strict):
    min_support: int = Field(3, ge=1, description="baskets a pair must share")
    max_basket: int = Field(50, ge=2, description="larger baskets are cut (keeps pair counting linear)")
    neighbours: int = Field(50, ge=5)
    recent_items: int = Field(5, ge=1, description="a user's recent items whose neighbours become candidates")


class CandidateConfig(_Strict):
    als: int = Field(200, ge=10)
    copurchase: int = Field(50, ge=0)
    popularity: int = Field(100, ge=10)
    total: int = Field(300, ge=10, description="candidates handed to the ranker")


class RankerConfig(_Strict):
    n_estimators: int = Field(50, ge=10)  # measured: 200 trees add 0.001 NDCG@10 for 3.7x the time
    num_leaves: int = Field(31, ge=4)
    learning_rate: float = Field(0.08, gt=0)
    min_child_samples: int = Field(50, ge=1)
    max_train_users: int = Field(30_000, ge=100)
    negatives_per_user: int = Field(60, ge=5)
    device: Literal["cpu", "gpu"] = "cpu"
    threads: int = Field(0, ge=0)


class TrainConfig(_Strict):
    holdout_days: int = Field(14, ge=0, description="held out for evaluation; 0 fits on everything")
    label_days: int = Field(
        14, ge=1, description="the period before the holdout whose events label the ranker"
    )
    seed: int = 42
    weights: EventWeights = EventWeights()
    als: ALSConfig = ALSConfig()
    popularity: PopularityConfig = PopularityConfig()
    copurchase: CopurchaseConfig = CopurchaseConfig()
    candidates: CandidateConfig = CandidateConfig()
    ranker: RankerConfig = RankerConfig()
    similar_items: int = Field(50, ge=5)


def load_train_config(path: Path | None) -> TrainConfig:
    """The ``train`` section of a params file (defaults when there is no file or no section)."""
    if path is None or not Path(path).exists():
        return TrainConfig()
    raw = yaml.safe_load(Path(path).read_text()) or {}
    try:
        return TrainConfig.model_validate(raw.get("train") or {})
    except ValueError as exc:
        raise UserInputError(f"{path}: bad 'train' parameters: {exc}") from exc
