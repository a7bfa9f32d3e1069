"""The trained model bundle: everything the recommender serves, in memory, and the one owner of
its files. Each component saves and loads its own file (as implicit's models do); this module names
the files, puts the components together and gives the manifest the entries it reads back.

A bundle folder holds (the file names and array keys are the format; the manifest's ``format``
says which: :data:`FORMAT` is written, and every earlier one still loads):

- the components, written by :meth:`Bundle.save`: ``catalog.npz`` (``Catalogue.save``; the category
  names are in the manifest's ``categories``), ``als.npz`` (``ALSRetriever.save``: the factors and
  the user id of each row), ``popularity.npz``, ``copurchase.npz``, ``exclusions.npz``,
  ``similar.npz``, ``features.npz`` and ``ranker.onnx`` (each by its class's ``save``), and
  ``recent.npz`` (each known user's recent products, CSR; here). ``catalog.npz`` keeps the name
  it had before the code spelled it "catalogue": a new name would need a new manifest ``format``
  and a reader of both, for nothing a reader can see;
- beside them, written by training and held by no :class:`Bundle`: ``retrieval.onnx`` (the ALS
  index as ONNX, registered in MLflow), ``ranker.txt`` (LightGBM's own model file),
  ``products.parquet`` (the storefront's products, read by ``serving/catalogue.py``),
  ``feature_importance.json`` and ``timings.json``.

Format 2 (this version) keeps the names and changes what the arrays hold, for memory: every
``.npz`` is written by ``recommndr/arrays.py`` with its arrays 64-byte aligned, and loading maps
them in place, read-only, so the API's worker processes share one copy of the model in the page
cache instead of each reading its own (format 1 files are written so too: what format 2 adds is
in the keys); the ALS user factors are int8 with a scale per row, the item factors are stored in
the exact index's scan order, and the large tables take the narrowest type that holds them
exactly (checked when saved: ``ranking/features.py`` says which). Format 1 files (float32 factors
in product order, int64 tables, written by ``np.savez`` or aligned) load as before: the
components read either set of keys; their arrays are mapped where aligned and read into memory
otherwise. A manifest of a later format than this code knows is refused with a message saying so.

The manifest (``manifest.json``: the files with their SHA-256, the signature) belongs to
``registry/artifacts.py``, whose ``BUNDLE_FILES`` lists the same names (a unit test keeps the two in
step); this module imports nothing of the registry. ``recommndr.loading.load_bundle`` checks a
bundle's manifest and then calls :meth:`Bundle.load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from recommndr.arrays import load_arrays, narrowest_int, save_arrays
from recommndr.data.interactions import Catalogue, positions
from recommndr.errors import ArtifactError
from recommndr.params import TrainConfig
from recommndr.ranking.candidates import CandidateGenerator, Exclusions
from recommndr.ranking.features import FEATURES, FeatureTables
from recommndr.ranking.ranker import OnnxRanker
from recommndr.retrieval.als import ALSRetriever
from recommndr.retrieval.popularity import PopularityRetriever
from recommndr.similarity.copurchase import CoPurchase, CoPurchaseRetriever
from recommndr.similarity.similar import SimilarItems

I64 = npt.NDArray[np.int64]
Ints = npt.NDArray[np.integer[Any]]  # int64, or a narrower type where a saved bundle keeps one
FORMAT = 2  # the manifest's "format" that save() writes; load() reads it and every earlier one
CATALOGUE = "catalog.npz"  # the name of the format's first version, kept (see above)
ALS = "als.npz"
POPULARITY = "popularity.npz"
COPURCHASE = "copurchase.npz"
EXCLUSIONS = "exclusions.npz"
RECENT = "recent.npz"
SIMILAR = "similar.npz"
FEATURES_FILE = "features.npz"
RANKER = "ranker.onnx"


@dataclass
class Bundle:
    """Everything the recommender needs, in memory. ``manifest`` is the one it was loaded with
    (empty for a bundle that training has not written yet)."""

    # the files :meth:`save` writes (training adds the others of ``BUNDLE_FILES``)
    FILES: ClassVar[frozenset[str]] = frozenset(
        {CATALOGUE, ALS, POPULARITY, COPURCHASE, EXCLUSIONS, RECENT, SIMILAR, FEATURES_FILE, RANKER}
    )
    # what the popularity fallback reads (:meth:`load_popularity`)
    POPULARITY_FILES: ClassVar[tuple[str, ...]] = (CATALOGUE, POPULARITY)

    config: TrainConfig
    catalogue: Catalogue
    user_ids: Ints  # sorted
    recent_indptr: Ints
    recent_items: Ints
    als: ALSRetriever
    popularity: PopularityRetriever
    copurchase: CoPurchase
    exclusions: Exclusions
    features: FeatureTables
    ranker: OnnxRanker
    similar: SimilarItems
    manifest: dict[str, Any] = field(default_factory=dict)

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

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the components to ``folder`` (:attr:`FILES`); returns the manifest entries that
        :meth:`load` reads back (parameters, category names) and the ranker's inputs and sizes."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.catalogue.save(folder / CATALOGUE)
        self.als.save(folder / ALS, self.user_ids)
        self.popularity.save(folder / POPULARITY)
        self.copurchase.save(folder / COPURCHASE)
        self.exclusions.save(folder / EXCLUSIONS)
        save_arrays(folder / RECENT, {
            "indptr": narrowest_int(self.recent_indptr, f"{folder / RECENT}: indptr"),
            "items": narrowest_int(self.recent_items, f"{folder / RECENT}: items"),
        })  # fmt: skip
        self.similar.save(folder / SIMILAR)
        self.features.save(folder / FEATURES_FILE)
        self.ranker.save(folder / RANKER)
        return {
            "format": FORMAT,
            "config": self.config.model_dump(),
            "categories": self.catalogue.category_names(),
            "features": list(FEATURES),
            "users": int(self.user_ids.shape[0]),
            "items": self.catalogue.n_items,
        }

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any], ranker_threads: int = 1) -> Bundle:
        """The bundle in ``folder`` whose (already checked) manifest is ``manifest``."""
        folder = Path(folder)
        check_format(folder, manifest)
        try:
            cfg = TrainConfig.model_validate(manifest["config"])
            catalogue = Catalogue.load(folder / CATALOGUE, manifest["categories"])
            als, user_ids = ALSRetriever.load(folder / ALS)
            pop = PopularityRetriever.load(folder / POPULARITY, catalogue)
            recent = load_arrays(folder / RECENT)
            rec_ptr, rec_items = recent["indptr"], recent["items"]
            return cls(
                config=cfg,
                catalogue=catalogue,
                user_ids=user_ids,
                recent_indptr=rec_ptr,
                recent_items=rec_items,
                als=als,
                popularity=pop,
                copurchase=CoPurchase.load(folder / COPURCHASE),
                exclusions=Exclusions.load(folder / EXCLUSIONS, catalogue.n_items),
                features=FeatureTables.load(folder / FEATURES_FILE),
                ranker=OnnxRanker.load(folder / RANKER, threads=ranker_threads),
                similar=SimilarItems.load(folder / SIMILAR, catalogue, als.item_known, pop.pop),
                manifest=manifest,
            )
        except (KeyError, ValueError, IndexError) as exc:  # a bundle from another format version
            raise ArtifactError(
                f"{folder}: the bundle cannot be read ({type(exc).__name__}: {exc}); it may come from an "
                "older recommndr: train it again"
            ) from exc

    @staticmethod
    def load_popularity(folder: Path, manifest: dict[str, Any]) -> tuple[Catalogue, PopularityRetriever]:
        """Only the catalogue and popularity (:attr:`POPULARITY_FILES`): the fallback that serves
        when the other components cannot be loaded."""
        check_format(Path(folder), manifest)
        catalogue = Catalogue.load(Path(folder) / CATALOGUE, manifest["categories"])
        return catalogue, PopularityRetriever.load(Path(folder) / POPULARITY, catalogue)


def check_format(folder: Path, manifest: dict[str, Any]) -> None:
    """Refuse a bundle of a format this code does not know (a later recommndr wrote it)."""
    fmt = manifest.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or not 1 <= fmt <= FORMAT:
        raise ArtifactError(
            f"{folder}: the bundle's format is {fmt!r}; this recommndr reads formats 1 to {FORMAT}: "
            "serve it with the recommndr that trained it, or train it again"
        )
