"""The served models: the champion and an optional challenger, each loaded beside the serving
one and swapped in with one assignment when its bundle changes (hot swap). Requests in flight
finish on the model they started with."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from recommndr.errors import ServiceUnavailableError
from recommndr.registry.artifacts import no_model_error
from recommndr.serving.faults import Fault
from recommndr.serving.metrics import ApiMetrics
from recommndr.serving.model import ServingModel
from recommndr.serving.sources import ModelSource
from recommndr.serving.traffic import CHALLENGER, CHAMPION, TrafficSplit

log = logging.getLogger(__name__)


def manifest_digest(path: Path | None) -> str | None:
    """SHA-256 of the bundle's manifest (None when there is none to read)."""
    if path is None:
        return None
    try:
        return hashlib.sha256((path / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return None


class ModelSlots:
    def __init__(
        self,
        make_source: Callable[[], ModelSource],
        traffic: TrafficSplit,
        metrics: ApiMetrics,
        challenger_traffic: float = 0.0,
    ) -> None:
        self._make_source = make_source
        self._source: ModelSource | None = None
        self.traffic = traffic
        self.metrics = metrics
        self.challenger_traffic = challenger_traffic  # a new challenger's first share
        self.champion: ServingModel | None = None
        self.challenger: ServingModel | None = None
        self.champion_path: Path | None = None
        self.digest: str | None = None  # of the champion's manifest
        self.challenger_digest: str | None = None
        self.not_ready = "models are loading"
        self.fault: Fault | None = None  # the injected fault (control file), for its challenger version

    @property
    def source(self) -> ModelSource:
        if self._source is None:
            self._source = self._make_source()
        return self._source

    def serving(self) -> ServingModel:
        """The champion, or ServiceUnavailableError (503 not_ready) saying why there is none."""
        if self.champion is None:
            raise ServiceUnavailableError(f"no model is loaded: {self.not_ready}", code="not_ready")
        return self.champion

    def pick(self, user_id: int) -> tuple[str, ServingModel]:
        """The user's variant and the model that serves it."""
        champion = self.serving()
        variant = self.variant_of(user_id)
        return (
            (variant, self.challenger) if variant == CHALLENGER and self.challenger else (variant, champion)
        )

    def variant_of(self, user_id: int) -> str:
        """The variant the user is assigned now ("none" before any model is loaded)."""
        if self.champion is None:
            return "none"
        return CHAMPION if self.challenger is None else self.traffic.assign(user_id)

    def set_fault(self, fault: Fault | None) -> None:
        """Inject ``fault`` into the challenger, if it is the version the fault was set for; the
        champion never gets one. A challenger loaded later gets it on the same condition."""
        self.fault = fault
        if self.challenger is not None:
            self.challenger.inject(self._fault_for(self.challenger))

    def _fault_for(self, model: ServingModel) -> Fault | None:
        f = self.fault
        return f if f is not None and f.version == model.version else None

    def refresh_champion(self, first: bool = False) -> bool:
        """Load a changed champion beside the serving one, then replace it. At start-up a bundle
        whose models fail to load may still serve popularity (``/ready`` says why)."""
        path = self.source.champion()
        digest = manifest_digest(path)
        if digest is None and first:
            raise no_model_error(path)
        if digest is None or digest == self.digest:
            return False
        new = ServingModel.load(path, allow_fallback=first)  # hash-checked and warmed first
        old = self.champion
        self.champion, self.champion_path, self.digest = new, path, digest
        if old is not None:
            self.metrics.model_info.labels(CHAMPION, old.version).set(0)
        self.metrics.model_info.labels(CHAMPION, new.version).set(1)
        if new.fallback is None:
            self.metrics.ready.set(1)
        else:
            self.not_ready = f"serving popularity only: {new.fallback}"
        if old is not None:
            log.warning("hot-swapped the champion: %s -> %s", old.version, new.version)
        return True

    def refresh_challenger(self) -> bool:
        """Load, replace or drop the challenger when its bundle changes (the same bundle as the
        champion's is no challenger); a new challenger keeps the current share of traffic."""
        path = self.source.challenger()
        digest = manifest_digest(path)
        if digest == self.digest:
            digest = None
        if digest == self.challenger_digest:
            return False
        old = self.challenger
        if digest is None or path is None:
            self.challenger, self.challenger_digest = None, None
            self.traffic.reset()
        else:
            new = ServingModel.load(path)
            new.inject(self._fault_for(new))
            share = self.traffic.challenger_share if old is not None else self.challenger_traffic
            self.challenger, self.challenger_digest = new, digest
            self.traffic.set(share)
            self.metrics.model_info.labels(CHALLENGER, new.version).set(1)
        if old is not None:
            self.metrics.model_info.labels(CHALLENGER, old.version).set(0)
        log.warning("challenger: %s -> %s", old.version if old else None,
                    self.challenger.version if self.challenger else None)  # fmt: skip
        return True
