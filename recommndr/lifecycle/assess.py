"""``recommndr evaluate``: every model fit on a protocol's training part with one set of
parameters and scored on its test part, beside the baselines (``evaluation/``). A bundle fit on
every event has nothing left to be scored on, so its parameters are refit here; a bundle from an
earlier version, fit before a hold-out, is scored as it is."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recommndr.data.interactions import load_catalogue, load_events
from recommndr.evaluation.evaluate import MODELS, evaluate, score_split
from recommndr.evaluation.protocols import Protocol, span_us, split
from recommndr.params import TrainConfig
from recommndr.training.pipeline import fit_models

log = logging.getLogger(__name__)


def evaluate_params(
    data: Path,
    cfg: TrainConfig,
    protocol: Protocol = "temporal",
    max_users: int = 20_000,
    models: tuple[str, ...] = MODELS,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Fit with ``cfg`` on the protocol's training part of ``data`` and score every model."""
    catalogue = load_catalogue(data)
    events = load_events(data)
    sp = split(events, catalogue, protocol, cfg.holdout_days)
    timings: dict[str, float] = {}
    if progress is not None:
        progress(f"fitting on the {protocol} protocol's training part")
    fitted = fit_models(
        catalogue, sp.train, sp.end_us, cfg, timings, labels=protocol, all_seen=sp.exclude_seen, similar=False
    )
    if progress is not None:
        progress("scoring")
    t0 = time.perf_counter()
    result = score_split(sp, catalogue, fitted.bundle, max_users=max_users, models=models)
    timings["scoring"] = time.perf_counter() - t0
    result["_meta"]["seconds"] = timings
    return result


def evaluate_artifacts(
    data: Path,
    artifacts: Path,
    protocol: Protocol = "temporal",
    max_users: int = 20_000,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """The bundle's own models where the data has a hold-out after them (temporal protocol), else
    the bundle's parameters refit on the protocol's split."""
    from recommndr.registry.artifacts import read_manifest

    manifest = read_manifest(artifacts)
    if protocol == "temporal":
        events = load_events(data)
        if events.height and span_us(events)[1] > int(manifest["cutoff_us"]):
            del events
            return evaluate(data, artifacts, max_users=max_users)
    cfg = TrainConfig.model_validate(manifest["config"])
    return evaluate_params(data, cfg, protocol, max_users, progress=progress)
