"""The one model loader: a bundle folder's manifest checked by the registry (exactly a bundle's
files, the signature, every file's SHA-256), then its components read by ``recommndr/bundle.py``.

It sits above both so that neither imports the other: the registry handles manifests and stores
without any model code, the bundle reads files without knowing how they were checked. For the
same reason ``rewrite_bundle`` (a bundle written again in the current format) lives here."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from recommndr.bundle import Bundle
from recommndr.errors import ArtifactError
from recommndr.registry.artifacts import SIGNATURE, read_manifest, write_manifest


def load_bundle(root: Path, verify: bool = True, ranker_threads: int = 1) -> Bundle:
    """Load and (by default) verify every file against the manifest's SHA-256."""
    return Bundle.load(root, read_manifest(root, verify), ranker_threads=ranker_threads)


def rewrite_bundle(src: Path, dest: Path, key: str | None = None) -> dict[str, Any]:
    """The bundle in ``src`` (of any format this version reads; verified) written again to the
    empty or new folder ``dest`` in the current format: the same models (saved as training saves
    them now), the files no :class:`Bundle` holds copied, and a new manifest, signed with ``key``
    (default: the configured key). Returns that manifest."""
    src, dest = Path(src), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ArtifactError(f"{dest} is not empty: rewrite a bundle into a new folder")
    bundle = load_bundle(src)
    entries = bundle.save(dest)
    for name in sorted(set(bundle.manifest["files"]) - Bundle.FILES):
        shutil.copy2(src / name, dest / name)
    kept = {k: v for k, v in bundle.manifest.items() if k not in ("files", "versions", SIGNATURE)}
    return write_manifest(dest, {**kept, **entries}, key)
