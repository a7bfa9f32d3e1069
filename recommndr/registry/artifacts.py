"""The trained model bundle: what ``recommndr train`` writes and every consumer loads, with a
manifest that records versions, cut-offs, the data's hash and each file's SHA-256."""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.data.interactions import Catalog, positions
from recommndr.errors import RecommndrError
from recommndr.ranking.features import FeatureTables
from recommndr.ranking.ranker import OnnxRanker
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.candidates import CandidateGenerator, Exclusions
from recommndr.retrieval.popularity import PopularityRetriever
from recommndr.similarity.copurchase import CoPurchase, CoPurchaseRetriever
from recommndr.similarity.similar import SimilarItems
from recommndr.training.config import TrainConfig

MANIFEST = "manifest.json"
I64 = npt.NDArray[np.int64]


class ArtifactError(RecommndrError):
    """Artifacts are missing, incomplete or do not match their manifest."""

    code = "artifact_error"
    exit_code = 2


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_hash(root: Path) -> str:
    """SHA-256 over the dataset's Parquet files (names and bytes), ground truth excluded."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*.parquet")):
        if "ground_truth" in p.parts:
            continue
        h.update(str(p.relative_to(root)).encode())
        h.update(sha256(p).encode())
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for lib in ("recommndr", "numpy", "implicit", "lightgbm", "onnx", "onnxruntime", "onnxmltools", "polars"):
        try:
            out[lib] = md.version(lib)
        except md.PackageNotFoundError:
            out[lib] = "absent"
    return out


@dataclass
class Bundle:
    """Everything the recommender needs, in memory."""

    manifest: dict[str, Any]
    config: TrainConfig
    catalog: Catalog
    user_ids: I64
    recent_indptr: I64
    recent_items: I64
    als: ALSRetriever
    popularity: PopularityRetriever
    copurchase: CoPurchase
    exclusions: Exclusions
    features: FeatureTables
    ranker: OnnxRanker
    similar: SimilarItems

    def candidate_generator(self) -> CandidateGenerator:
        return CandidateGenerator(
            self.als,
            self.popularity,
            CoPurchaseRetriever(self.copurchase, self.config.copurchase.recent_items),
            self.exclusions,
            self.config.candidates,
        )

    def user_index(self, user_ids: I64) -> I64:
        """Dense indices of ``user_ids`` in the served model; -1 for users it has not seen."""
        return positions(self.user_ids, user_ids)


def write_manifest(out: Path, extra: dict[str, Any]) -> dict[str, Any]:
    files = {p.name: sha256(p) for p in sorted(Path(out).iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {"format": 1, "versions": library_versions(), "files": files, **extra}
    (Path(out) / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return manifest


def no_model_error(root: Path) -> ArtifactError:
    return ArtifactError(f"{root} holds no trained model ({MANIFEST} is missing); run `recommndr train`")


def read_manifest(root: Path, verify: bool = True, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The bundle's manifest, after checking that its files (or ``only`` these) match their SHA-256."""
    root = Path(root)
    mpath = root / MANIFEST
    if not mpath.exists():
        raise no_model_error(root)
    manifest: dict[str, Any] = json.loads(mpath.read_text())
    for name, digest in manifest["files"].items():
        if only is not None and name not in only:
            continue
        p = root / name
        if not p.exists():
            raise ArtifactError(f"{p} is missing")
        if verify and sha256(p) != digest:
            raise ArtifactError(f"{p} does not match its hash in {mpath}")
    return manifest


def load_catalog(root: Path, manifest: dict[str, Any]) -> Catalog:
    names = manifest["categories"]
    with np.load(Path(root) / "catalog.npz") as z:
        return Catalog(
            item_ids=z["item_ids"], l1=z["l1"], l2=z["l2"], l3=z["l3"],
            l1_names=names["l1"], l2_names=names["l2"], l3_names=names["l3"],
            price=z["price"], created_us=z["created_us"],
        )  # fmt: skip


def load_popularity(root: Path, catalog: Catalog) -> PopularityRetriever:
    with np.load(Path(root) / "popularity.npz") as z:
        return PopularityRetriever(catalog, z["pop"], z["new_arrival"], int(z["per_category"]))


def load_bundle(root: Path, verify: bool = True, ranker_threads: int = 1) -> Bundle:
    """Load and (by default) verify every file against the manifest's SHA-256."""
    root = Path(root)
    manifest = read_manifest(root, verify)
    try:
        cfg = TrainConfig.model_validate(manifest["config"])
        catalog = load_catalog(root, manifest)
        with np.load(root / "als.npz") as z:
            als = ALSRetriever(z["user_factors"], z["item_factors"], z["item_known"], float(z["reg"]))
            user_ids = z["user_ids"]
        pop = load_popularity(root, catalog)
        with np.load(root / "copurchase.npz") as z:
            cop = CoPurchase(z["indptr"], z["nbr"], z["score"], z["support"], int(z["n_baskets"]))
        with np.load(root / "exclusions.npz") as z:
            excl = Exclusions(z["keys"], catalog.n_items, z["repeatable_l3"])
        with np.load(root / "recent.npz") as z:
            rec_ptr, rec_items = z["indptr"], z["items"]
        with np.load(root / "similar.npz") as z:
            similar = SimilarItems(catalog, z["nbr"], z["sim"], als.item_known, pop.pop)
        return Bundle(
            manifest=manifest,
            config=cfg,
            catalog=catalog,
            user_ids=user_ids,
            recent_indptr=rec_ptr,
            recent_items=rec_items,
            als=als,
            popularity=pop,
            copurchase=cop,
            exclusions=excl,
            features=FeatureTables.load(root / "features.npz"),
            ranker=OnnxRanker((root / "ranker.onnx").read_bytes(), threads=ranker_threads),
            similar=similar,
        )
    except (KeyError, ValueError, IndexError) as exc:  # a bundle from another format version
        raise ArtifactError(
            f"{root}: the bundle cannot be read ({type(exc).__name__}: {exc}); it may come from an "
            "older recommndr: train it again"
        ) from exc
