"""Where artifacts live between training and serving: a local folder by default, Azure Blob
Storage (tested against Azurite) when a connection string is set. Same interface, real both ways.

A published bundle is ``NAME/<file>`` for every file its manifest lists, the manifest uploaded
last, so a reader never finds a manifest whose files are not all there. ``fetch`` reads the
manifest first and refuses it unless it lists exactly a bundle's files
(:data:`~recommndr.registry.artifacts.BUNDLE_FILES`) and, when a signing key is configured,
carries a valid signature; only then does it download each file into a private temporary folder,
checking its SHA-256 as it goes, and rename that folder into the cache.

Several API workers may fetch the same bundle at once: the cache folder is named by the
manifest's content, and a folder that another worker put there first, holding the same manifest
and all its files, is the answer (it was checked before it was renamed into place).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from recommndr.errors import ArtifactError
from recommndr.registry.artifacts import MANIFEST, configured_signing_key, parse_manifest, read_manifest

log = logging.getLogger(__name__)


class ArtifactStore(ABC):
    @abstractmethod
    def publish(self, artifacts: Path, name: str) -> None:
        """Make the bundle in ``artifacts`` available as ``name``."""

    @abstractmethod
    def fetch(self, name: str, cache: Path) -> Path:
        """A local folder holding bundle ``name`` (hash-checked)."""


def check_bundle_name(name: str) -> str:
    """``name`` as a relative path of plain parts (``champion``, ``shop/champion``)."""
    if "\\" in name or any(part in ("", ".", "..") for part in name.split("/")):
        raise ArtifactError(f"bundle name {name!r} is not a relative name like 'champion'")
    return name


def holds_bundle(folder: Path, manifest_bytes: bytes) -> bool:
    """Whether ``folder`` holds the bundle whose manifest is ``manifest_bytes``: the same manifest
    and every file it lists (hashes are checked when the bundle is loaded)."""
    try:
        if (folder / MANIFEST).read_bytes() != manifest_bytes:
            return False
        manifest = parse_manifest(manifest_bytes, str(folder / MANIFEST), verify=False)
    except (OSError, ArtifactError):
        return False
    return all((folder / n).is_file() for n in manifest["files"])


def install_bundle(src: Path, dest: Path) -> None:
    """Rename the checked bundle folder ``src`` to ``dest``: complete or absent, never half there.

    When ``dest`` already holds the same bundle (another worker fetched it meanwhile) that is
    success and ``src`` is left for the caller to delete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        src.replace(dest)
    except OSError as exc:
        if holds_bundle(dest, (src / MANIFEST).read_bytes()):
            log.info("%s was put in place by another process meanwhile; using it", dest)
            return
        raise ArtifactError(
            f"cannot put the fetched bundle at {dest} ({exc}): that folder holds something else "
            "than this bundle; delete it"
        ) from exc


@functools.cache
def _warn_unsigned(container: str) -> None:  # once per container and process
    log.warning(
        "bundles from blob container %s are not signature-checked: RECOMMNDR_BUNDLE_SIGNING_KEY is "
        "not set, so whoever can write the container can change a bundle and its hashes",
        container,
    )


class LocalStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def publish(self, artifacts: Path, name: str) -> None:
        dest = self.root / check_bundle_name(name)
        manifest = read_manifest(artifacts)  # never publish a bundle that does not verify
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        for fname in [*manifest["files"], MANIFEST]:
            shutil.copy2(Path(artifacts) / fname, tmp / fname)
        old = None
        if dest.exists():  # set the old bundle aside, never delete it first: a reader always finds one
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
            dest.replace(old / "bundle")
        tmp.replace(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def fetch(self, name: str, cache: Path) -> Path:
        path = self.root / check_bundle_name(name)
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

        check_bundle_name(name)
        manifest = read_manifest(artifacts)  # never publish a bundle that does not verify
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()
        files = sorted(manifest["files"])
        for fname in [*files, MANIFEST]:  # the manifest last
            with (Path(artifacts) / fname).open("rb") as f:
                self.container.upload_blob(f"{name}/{fname}", f, overwrite=True, max_concurrency=2)
        log.info("published %d files to blob %s/%s", len(files) + 1, self.container_name, name)

    def fetch(self, name: str, cache: Path) -> Path:
        from azure.core.exceptions import ResourceNotFoundError

        check_bundle_name(name)
        where = f"blob {self.container_name}/{name}/{MANIFEST}"
        try:
            raw = self.container.download_blob(f"{name}/{MANIFEST}").readall()
        except ResourceNotFoundError as exc:
            raise ArtifactError(f"no bundle '{name}' in blob container '{self.container_name}'") from exc
        # names and signature are checked before any file is downloaded or any path is built
        manifest = parse_manifest(raw, where)
        if configured_signing_key() is None:
            _warn_unsigned(self.container_name)
        # one folder per manifest: a new version never overwrites the one being served
        dest = Path(cache) / name / hashlib.sha256(raw).hexdigest()[:16]
        if holds_bundle(dest, raw):
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
            (tmp / MANIFEST).write_bytes(raw)
            install_bundle(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dest


def open_store(connection_string: str | None, container: str, local_root: Path) -> ArtifactStore:
    return BlobStore(connection_string, container) if connection_string else LocalStore(local_root)
