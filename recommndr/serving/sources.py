"""Where the API's champion and challenger bundles come from, as local folders to load:

- ``FolderSource``: folders on disk (the default; ``recommndr serve --artifacts DIR``);
- ``StoreSource``: named bundles in Azure Blob Storage, fetched hash-checked into a local cache;
- ``RegistrySource``: the MLflow Model Registry's ``champion`` and ``challenger`` aliases of the
  ranker; each version's run holds the whole bundle (``bundle/``), downloaded once per run.

The API's watcher asks the source again every ``reload_interval_s``: a changed manifest (a new
alias target, a re-published bundle) is loaded beside the serving model and swapped in.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from recommndr.errors import ArtifactError
from recommndr.registry.artifacts import MANIFEST, read_manifest
from recommndr.registry.store import BlobStore, install_bundle
from recommndr.registry.tracking import alias_version

log = logging.getLogger(__name__)


class ModelSource(Protocol):
    description: str

    def champion(self) -> Path: ...

    def challenger(self) -> Path | None: ...


class FolderSource:
    def __init__(self, champion: Path, challenger: Path | None = None) -> None:
        self._champion, self._challenger = Path(champion), challenger
        self.description = f"folder {champion}"

    def champion(self) -> Path:
        return self._champion

    def challenger(self) -> Path | None:
        return self._challenger


class StoreSource:
    def __init__(self, store: BlobStore, name: str, challenger: str | None, cache: Path) -> None:
        self.store, self.name, self.challenger_name, self.cache = store, name, challenger, cache
        self.description = f"blob container {store.container_name}, bundle {name}"

    def champion(self) -> Path:
        return self.store.fetch(self.name, self.cache)

    def challenger(self) -> Path | None:
        return self.store.fetch(self.challenger_name, self.cache) if self.challenger_name else None


class RegistrySource:
    """The bundles behind the registry's aliases (``MLFLOW_TRACKING_URI`` style ``uri``)."""

    def __init__(self, uri: str, model: str, cache: Path) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in the API's log
        from mlflow import MlflowClient  # imported only when the API follows the registry

        self.client: Any = MlflowClient(tracking_uri=uri)
        self.uri, self.model, self.cache = uri, model, Path(cache)
        self.description = f"MLflow registry {uri}, model {model}"

    def _run_of(self, alias: str) -> str | None:
        version = alias_version(self.client, self.model, alias)
        return None if version is None else str(version.run_id)

    def _bundle(self, run_id: str) -> Path:
        dest = self.cache / f"mlflow-{run_id}"
        if (dest / MANIFEST).exists():
            return dest
        from mlflow.artifacts import download_artifacts

        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download.", dir=self.cache))
        try:
            got = Path(download_artifacts(run_id=run_id, artifact_path="bundle", dst_path=str(tmp),
                                          tracking_uri=self.uri))  # fmt: skip
            if not (got / MANIFEST).exists():
                raise ArtifactError(f"run {run_id} holds no bundle (bundle/{MANIFEST} is missing)")
            try:
                read_manifest(got)  # only a bundle that verifies enters the cache
            except ArtifactError as exc:
                raise ArtifactError(f"the bundle of run {run_id} is refused: {exc}") from exc
            # complete or absent, never half-downloaded; another worker's copy there is success
            install_bundle(got, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def champion(self) -> Path:
        run = self._run_of("champion")
        if run is None:
            raise ArtifactError(f"the registry has no champion for {self.model}: run `recommndr train`")
        return self._bundle(run)

    def challenger(self) -> Path | None:
        run = self._run_of("challenger")
        return None if run is None else self._bundle(run)
