"""Where artifacts live between training and serving: a local folder by default, Azure Blob
Storage (tested against Azurite) when a connection string is set. Same interface, real both ways.

A published bundle is ``NAME/<file>`` for every file of the artifacts folder, the manifest
uploaded last, so a reader never finds a manifest whose files are not all there. ``fetch``
downloads into a local cache and checks every file against the manifest's SHA-256 as it goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from recommndr.registry.artifacts import MANIFEST, ArtifactError

log = logging.getLogger(__name__)


class ArtifactStore(ABC):
    @abstractmethod
    def publish(self, artifacts: Path, name: str) -> None:
        """Make the bundle in ``artifacts`` available as ``name``."""

    @abstractmethod
    def fetch(self, name: str, cache: Path) -> Path:
        """A local folder holding bundle ``name`` (hash-checked)."""


class LocalStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def publish(self, artifacts: Path, name: str) -> None:
        dest = self.root / name
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.root))
        for p in Path(artifacts).iterdir():
            if p.is_file():
                shutil.copy2(p, tmp / p.name)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.replace(dest)

    def fetch(self, name: str, cache: Path) -> Path:
        path = self.root / name
        if not (path / MANIFEST).exists():
            raise ArtifactError(f"no bundle '{name}' in {self.root}")
        return path


class BlobStore(ArtifactStore):
    def __init__(self, connection_string: str, container: str) -> None:
        from azure.storage.blob import BlobServiceClient

        self.client = BlobServiceClient.from_connection_string(connection_string)
        self.container = self.client.get_container_client(container)
        self.container_name = container

    def publish(self, artifacts: Path, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()
        files = sorted(p for p in Path(artifacts).iterdir() if p.is_file() and p.name != MANIFEST)
        for p in [*files, Path(artifacts) / MANIFEST]:  # the manifest last
            with p.open("rb") as f:
                self.container.upload_blob(f"{name}/{p.name}", f, overwrite=True, max_concurrency=2)
        log.info("published %d files to blob %s/%s", len(files) + 1, self.container_name, name)

    def fetch(self, name: str, cache: Path) -> Path:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            manifest: dict[str, Any] = json.loads(
                self.container.download_blob(f"{name}/{MANIFEST}").readall()
            )
        except ResourceNotFoundError as exc:
            raise ArtifactError(f"no bundle '{name}' in blob container '{self.container_name}'") from exc
        dest = (
            Path(cache) / name / _digest(manifest)
        )  # one folder per content: a new version never overwrites
        if (dest / MANIFEST).exists():
            return dest
        Path(cache).mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".fetch.", dir=cache))
        try:
            for fname, digest in manifest["files"].items():
                h = hashlib.sha256()
                with (tmp / fname).open("wb") as out:
                    for chunk in self.container.download_blob(f"{name}/{fname}").chunks():
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != digest:
                    raise ArtifactError(f"blob {name}/{fname} does not match its hash in the manifest")
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp.replace(dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dest


def _digest(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()[:16]


def open_store(connection_string: str | None, container: str, local_root: Path) -> ArtifactStore:
    return BlobStore(connection_string, container) if connection_string else LocalStore(local_root)
