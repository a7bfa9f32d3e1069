"""A bundle's manifest: what ``recommndr train`` records beside the bundle's files (versions,
cut-offs, the data's hash and each file's SHA-256) and what every consumer checks before loading.

The manifest lists exactly :data:`BUNDLE_FILES` (plus the optional ones). With a signing key
configured (``RECOMMNDR_BUNDLE_SIGNING_KEY``) it carries an HMAC-SHA256 over its canonical JSON,
and a manifest whose signature is missing or wrong is refused; with no key, bundles are written
unsigned and any manifest is accepted (the hashes then catch corruption, not forgery).

No model code here: the files' content belongs to ``recommndr/bundle.py``, and
``recommndr.loading.load_bundle`` is the one loader (this module's checks, then the bundle's)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import platform
import re
from pathlib import Path
from typing import Any

from recommndr.errors import ArtifactError

MANIFEST = "manifest.json"
# The one list of what a bundle holds (recommndr/bundle.py writes and reads the components,
# training adds its exports beside them; tests/unit/test_bundle.py keeps the two in step): a
# manifest naming any other file, or lacking one of these, is refused, so a manifest can never make
# a reader write or read outside the bundle's folder.
BUNDLE_FILES = frozenset(
    {
        "als.npz",
        "catalog.npz",
        "copurchase.npz",
        "exclusions.npz",
        "feature_importance.json",
        "features.npz",
        "popularity.npz",
        "products.parquet",
        "ranker.onnx",
        "ranker.txt",
        "recent.npz",
        "retrieval.onnx",
        "similar.npz",
        "timings.json",
    }
)
# Accepted when listed, never required: the int8 index, built by versions before the exact scan,
# and the monitoring reference (recommndr/monitoring/reference.py), which earlier bundles lack.
OPTIONAL_BUNDLE_FILES = frozenset({"retrieval_int8.onnx", "monitoring.npz"})
SIGNATURE = "signature"
SIGNATURE_ALG = "HMAC-SHA256"
log = logging.getLogger(__name__)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_version(manifest: dict[str, Any]) -> str:
    """The version a bundle is served as (``/models``, ``model_version``): a hash of its files."""
    return hashlib.sha256(str(sorted(manifest["files"].items())).encode()).hexdigest()[:12]


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


def configured_signing_key() -> str | None:
    """``settings.bundle_signing_key`` (``RECOMMNDR_BUNDLE_SIGNING_KEY``; Key Vault fills it on Azure)."""
    from recommndr.config import get_settings

    return get_settings().bundle_signing_key


def _canonical(manifest: dict[str, Any]) -> bytes:
    """The signed bytes: the manifest without its signature, keys sorted, no whitespace."""
    body = {k: v for k, v in manifest.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_signature(manifest: dict[str, Any], key: str) -> dict[str, str]:
    mac = hmac.new(key.encode(), _canonical(manifest), hashlib.sha256).hexdigest()
    return {"alg": SIGNATURE_ALG, "mac": mac}


def verify_signature(manifest: dict[str, Any], where: str, key: str | None = None) -> None:
    """Refuse ``manifest`` (read from ``where``) unless it carries a valid HMAC of its content.

    ``key`` defaults to the configured one. With no key configured nothing can be checked and
    every manifest, signed or not, is accepted: the file hashes then guard against corruption,
    not against whoever can write the bundle's folder or blob container."""
    key = key if key is not None else configured_signing_key()
    if key is None:
        return
    sig = manifest.get(SIGNATURE)
    if not isinstance(sig, dict) or not isinstance(sig.get("mac"), str):
        raise ArtifactError(
            f"{where} is not signed, and a bundle signing key is configured "
            "(RECOMMNDR_BUNDLE_SIGNING_KEY): train the bundle again with that key set"
        )
    if sig.get("alg") != SIGNATURE_ALG:
        raise ArtifactError(f"{where} is signed with {sig.get('alg')!r}; only {SIGNATURE_ALG} is accepted")
    mac = sig["mac"]
    if not (mac.isascii() and hmac.compare_digest(mac, manifest_signature(manifest, key)["mac"])):
        raise ArtifactError(
            f"{where}: the manifest's signature is wrong (the manifest was changed after signing, or "
            "signed with another key than RECOMMNDR_BUNDLE_SIGNING_KEY)"
        )


def check_manifest(manifest: Any, where: str) -> dict[str, str]:
    """The manifest's ``files`` after checking that they are exactly a bundle's files: every one of
    :data:`BUNDLE_FILES`, optionally :data:`OPTIONAL_BUNDLE_FILES`, nothing else, each with a
    SHA-256. Run before any of its names is joined to a path."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ArtifactError(f"{where} has no 'files' table: it is not a bundle manifest")
    unknown = sorted(str(n) for n in files if n not in BUNDLE_FILES | OPTIONAL_BUNDLE_FILES)
    if unknown:
        raise ArtifactError(f"{where} names files that are not part of a bundle: {unknown}")
    missing = sorted(BUNDLE_FILES - files.keys())
    if missing:
        raise ArtifactError(f"{where} lacks bundle files {missing}; train the bundle again")
    bad = sorted(n for n, d in files.items() if not (isinstance(d, str) and _SHA256_HEX.fullmatch(d)))
    if bad:
        raise ArtifactError(f"{where}: {bad} have no valid SHA-256 in the manifest")
    return files


def parse_manifest(raw: bytes, where: str, verify: bool = True, key: str | None = None) -> dict[str, Any]:
    """A manifest's content, its file names checked and (with ``verify``) its signature."""
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise ArtifactError(f"{where} is not valid JSON: {exc}") from exc
    check_manifest(manifest, where)
    if verify:
        verify_signature(manifest, where, key)
    return dict(manifest)


def write_manifest(out: Path, extra: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """Hash the bundle's files in ``out`` into its manifest, signed with ``key`` (default: the
    configured key; none configured: unsigned). Other files in ``out`` are not part of the bundle."""
    out = Path(out)
    missing = sorted(n for n in BUNDLE_FILES if not (out / n).is_file())
    if missing:
        raise ArtifactError(f"{out} lacks bundle files {missing}: cannot write its manifest")
    names = sorted(BUNDLE_FILES | {n for n in OPTIONAL_BUNDLE_FILES if (out / n).is_file()})
    others = sorted(p.name for p in out.iterdir() if p.name not in names and p.name != MANIFEST)
    if others:
        log.info("%s: %s are not part of the bundle (left out of its manifest)", out, others)
    manifest: dict[str, Any] = {
        "format": 1,
        "versions": library_versions(),
        "files": {n: sha256(out / n) for n in names},
        **{k: v for k, v in extra.items() if k != SIGNATURE},
    }
    manifest = json.loads(json.dumps(manifest, default=str))  # sign what a reader will parse
    key = key if key is not None else configured_signing_key()
    if key is not None:
        manifest[SIGNATURE] = manifest_signature(manifest, key)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def no_model_error(root: Path) -> ArtifactError:
    return ArtifactError(f"{root} holds no trained model ({MANIFEST} is missing); run `recommndr train`")


def read_manifest(
    root: Path, verify: bool = True, only: tuple[str, ...] | None = None, key: str | None = None
) -> dict[str, Any]:
    """The bundle's manifest, after checking that it lists exactly a bundle's files, that its
    signature is right (``key``: default the configured one) and that its files (or ``only``
    these) match their SHA-256. ``verify=False`` skips the signature and the hashes, never the
    file names."""
    root = Path(root)
    mpath = root / MANIFEST
    if not mpath.exists():
        raise no_model_error(root)
    manifest = parse_manifest(mpath.read_bytes(), str(mpath), verify, key)
    for name, digest in manifest["files"].items():
        if only is not None and name not in only:
            continue
        p = root / name
        if not p.exists():
            raise ArtifactError(f"{p} is missing")
        if verify and sha256(p) != digest:
            raise ArtifactError(f"{p} does not match its hash in {mpath}")
    return manifest
