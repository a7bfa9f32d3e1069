"""``recommndr abtest``: arm a (a bundle) against arm b (another bundle, or ``popularity``).

On a synthetic shop (a ``ground_truth/`` folder beside the data) it is the A/B simulation of
``evaluation/abtest.py``: simulated visits, clicks, carts and purchases, paired differences.

On data without a ground truth it never reports a CTR: nothing there says what a shopper would
have clicked. It runs a replay (``evaluation/replay.py``): both arms' parameters refit before the
last ``holdout_days`` of the data (as ``recommndr evaluate`` does: a bundle fit on every event has
seen the period it would be scored on), each held-out buyer's top 10 from each arm, and the paired
hit rate and recall of what they bought, labelled ``"kind": "replay"``.

Either way the result is logged to MLflow (parameters, every figure, the interval plot, the JSON).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recommndr.bundle import Bundle
from recommndr.data.interactions import Catalogue, load_catalogue, load_events
from recommndr.data.schema import read_table
from recommndr.errors import UserInputError
from recommndr.evaluation import abtest as ab
from recommndr.evaluation.evaluate import sample_users
from recommndr.evaluation.paired import compare, ratio
from recommndr.evaluation.protocols import temporal_split
from recommndr.evaluation.replay import METRICS as REPLAY_METRICS
from recommndr.evaluation.replay import bought, replay_stats
from recommndr.evaluation.shoppers import has_ground_truth, load_shoppers
from recommndr.loading import load_bundle
from recommndr.params import TrainConfig
from recommndr.registry.artifacts import read_manifest
from recommndr.registry.tracking import log_experiment
from recommndr.training.pipeline import fit_models

log = logging.getLogger(__name__)
Progress = Callable[[str], Any] | None


def _say(progress: Progress, what: str) -> None:
    if progress is not None:
        progress(what)


def _data_users(data: Path) -> np.ndarray:
    return np.asarray(read_table(data, "users", columns=["user_id"])["user_id"].to_numpy(), dtype=np.int64)


def _load(path: Path, catalogue: Catalogue, users: np.ndarray, what: str) -> Bundle:
    bundle = load_bundle(path, ranker_threads=2)
    ab.check_bundle(bundle, catalogue, users, what)
    return bundle


def run_abtest(
    data: Path,
    a: Path,
    b: Path | str,
    users: int = 20_000,
    seed: int = 0,
    resamples: int = 2000,
    track: bool = True,
    progress: Progress = None,
) -> dict[str, Any]:
    """The simulation where the data has a ground truth, else the replay; logged when ``track``."""
    ab.check_users(users)
    if not 100 <= resamples <= 100_000:
        raise UserInputError(f"--resamples must be between 100 and 100,000 (got {resamples:,})")
    if isinstance(b, str) and b != ab.POPULARITY:
        raise UserInputError(f"--b must be an artifacts folder or '{ab.POPULARITY}' (got {b!r})")
    t0 = time.perf_counter()
    if has_ground_truth(data):
        result = simulate(data, a, b, users, seed, resamples, progress)
    else:
        result = replay(data, a, b, users, seed, resamples, progress)
    result["_meta"]["seconds"] = round(time.perf_counter() - t0, 2)
    result["_meta"] |= {"data": str(data), "a_artifacts": str(a), "b_artifacts": str(b)}
    if track:
        _say(progress, "logging to MLflow")
        result["_meta"]["mlflow_run"] = _track(result)
    return result


def simulate(
    data: Path, a: Path, b: Path | str, users: int, seed: int, resamples: int, progress: Progress = None
) -> dict[str, Any]:
    _say(progress, "loading the ground truth and the bundles")
    catalogue = load_catalogue(data)
    shoppers = load_shoppers(data, catalogue)
    bundle_a = _load(a, catalogue, shoppers.user_ids, "--a")
    arm_b = (
        ab.Arm(ab.POPULARITY, None, bundle_a)
        if isinstance(b, str)
        else ab.Arm("two_stage (b)", _load(b, catalogue, shoppers.user_ids, "--b"))
    )
    _say(progress, f"simulating {users:,} visits")
    return ab.run(shoppers, ab.Arm("two_stage (a)", bundle_a), arm_b, users, seed, resamples)


def _refit(data_cat: Catalogue, train: Any, end_us: int, artifacts: Path, what: str) -> Bundle:
    cfg = TrainConfig.model_validate(read_manifest(artifacts)["config"])
    timings: dict[str, float] = {}
    return fit_models(data_cat, train, end_us, cfg, timings, similar=False, tag=what).bundle


def replay(
    data: Path, a: Path, b: Path | str, users: int, seed: int, resamples: int, progress: Progress = None
) -> dict[str, Any]:
    """Both arms refit before the data's last ``holdout_days`` (arm a's), scored on what the
    held-out buyers bought."""
    _say(progress, "no ground truth: replaying on the held-out purchases (not a CTR)")
    catalogue = load_catalogue(data)
    data_users = _data_users(data)
    manifest_a = read_manifest(a)
    ab.check_bundle(load_bundle(a), catalogue, data_users, "--a")
    if not isinstance(b, str):
        ab.check_bundle(load_bundle(b), catalogue, data_users, "--b")
    holdout = int(TrainConfig.model_validate(manifest_a["config"]).holdout_days)
    split = temporal_split(load_events(data), catalogue, holdout)
    pairs = bought(split.targets)
    if pairs.height == 0:
        raise UserInputError(f"{data}: nobody bought anything in the last {holdout} days: nothing to replay")
    shoppers = sample_users(pairs, users, seed)
    _say(progress, f"refitting arm a's parameters before the last {holdout} days")
    fit_a = _refit(catalogue, split.train, split.end_us, a, "replay a")
    arm_a = ab.Arm("two_stage (a)", fit_a)
    if isinstance(b, str):
        arm_b = ab.Arm(ab.POPULARITY, None, fit_a)
    else:
        _say(progress, "refitting arm b's parameters")
        arm_b = ab.Arm("two_stage (b)", _refit(catalogue, split.train, split.end_us, b, "replay b"))
    _say(progress, f"ranking {shoppers.shape[0]:,} held-out buyers")
    stats = {
        arm: replay_stats(shoppers, x.lists(shoppers), pairs, catalogue.n_items)
        for arm, x in (("a", arm_a), ("b", arm_b))
    }
    diff = compare(stats["a"], stats["b"], REPLAY_METRICS, resamples=resamples, seed=seed)
    return {
        "a": {k: ratio(stats["a"], m) for k, m in REPLAY_METRICS.items()},
        "b": {k: ratio(stats["b"], m) for k, m in REPLAY_METRICS.items()},
        "diff": {k: d.as_dict() for k, d in diff.items()},
        "_meta": {
            "kind": "replay",
            "note": "no ground truth: a replay of held-out purchases (hit rate and recall of each "
            "arm's top 10), not a CTR, add-to-cart or conversion rate",
            "a": arm_a.name,
            "b": arm_b.name,
            "shoppers": int(shoppers.shape[0]),
            "holdout_days": holdout,
            "cutoff_us": split.end_us,
            "seed": seed,
            "resamples": resamples,
        },
    }


def _track(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    meta = result["_meta"]
    kind = meta["kind"]
    title = f"{meta['a']} vs {meta['b']} ({kind})"
    fig = ab.interval_plot(result, title)
    try:
        params = {k: v for k, v in meta.items() if not isinstance(v, dict)}
        numbers: dict[str, Any] = {k: result[k] for k in ("a", "b", "diff", "expected") if k in result}
        run_id, _ = log_experiment(
            f"abtest {kind}", f"abtest.{kind}", params, numbers, {"intervals.png": fig},
            {"abtest.json": json.dumps(result, indent=2, default=str)},
        )  # fmt: skip
    finally:
        plt.close(fig)
    return run_id
