"""The one model loader: a bundle folder's manifest checked by the registry (exactly a bundle's
files, the signature, every file's SHA-256), then its components read by ``recommndr/bundle.py``.

It sits above both so that neither imports the other: the registry handles manifests and stores
without any model code, the bundle reads files without knowing how they were checked."""

from __future__ import annotations

from pathlib import Path

from recommndr.bundle import Bundle
from recommndr.registry.artifacts import read_manifest


def load_bundle(root: Path, verify: bool = True, ranker_threads: int = 1) -> Bundle:
    """Load and (by default) verify every file against the manifest's SHA-256."""
    return Bundle.load(root, read_manifest(root, verify), ranker_threads=ranker_threads)
