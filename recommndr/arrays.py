"""The bundle's array files: ``.npz`` archives whose arrays are memory-mapped where they lie.

:func:`save_arrays` writes what ``np.savez`` writes (a ZIP of stored, uncompressed ``.npy``
members, readable by ``np.load``) with one difference: each member's array data starts at a
multiple of 64 bytes in the file (the padding is a ZIP extra field, 0xD935, the one Android's
zipalign uses), and the file is written beside its name and renamed into place, so a reader that
maps the old file keeps the old content instead of seeing it truncated.

:func:`load_arrays` maps each stored member in place, read-only: the pages are the file's, in the
page cache, shared by every process that maps the same file (the API's worker processes), read
from disk when first touched and never copied into a process's private memory. A member that
cannot be mapped — compressed, of an object dtype, or not aligned to its element size (``np.savez``
leaves members at whatever offset the ZIP headers end, so most arrays of bundles written before
this module are not) — is read into private memory as ``np.load`` would.

Narrowing helpers: :func:`exact` casts to a narrower type and fails loudly (``ArtifactError``)
when a value would not survive the round trip; :func:`narrowest_int` picks the narrowest integer
type that holds every value.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.errors import ArtifactError

ALIGN = 64
_PAD_ID = 0xD935  # zipalign's extra field: 2 bytes of alignment, then zero padding
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the ZIP local file header (30 bytes)
_CHUNK = 1 << 24


def _npy_header(arr: npt.NDArray[Any]) -> bytes:
    buf = io.BytesIO()
    d = np.lib.format.header_data_from_array_1_0(arr)
    try:
        np.lib.format.write_array_header_1_0(buf, d)
    except ValueError:  # a header over 64 KiB (a huge structured dtype)
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, d)
    return buf.getvalue()


def save_arrays(path: Path, arrays: Mapping[str, Any]) -> None:
    """Write ``arrays`` to ``path`` as an ``.npz`` with every member's data 64-byte aligned
    (atomically: a temporary file renamed over ``path``)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, value in arrays.items():
                arr = np.asarray(value)
                arr = arr if arr.flags.c_contiguous else arr.copy(order="C")  # (keeps a 0-d array 0-d)
                if arr.dtype.hasobject:
                    raise ValueError(f"{path}: {key} is an object array; the bundle holds numbers only")
                header = _npy_header(arr)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                offset = f.tell()
                # the local header zipfile will write: 30 bytes, the name, the extra fields (ours,
                # then its own 20-byte zip64 one); then the .npy header
                base = _LOCAL_HEADER.size + len(info.filename.encode()) + 20 + len(header)
                pad = -(offset + base) % ALIGN
                pad += ALIGN if pad < 6 else 0  # the field's own 4-byte header and 2-byte alignment
                info.extra = struct.pack("<HHH", _PAD_ID, pad - 4, ALIGN) + bytes(pad - 6)
                with zf.open(info, "w", force_zip64=True) as member:
                    member.write(header)
                    flat = arr.reshape(-1).view(np.uint8) if arr.size else np.zeros(0, np.uint8)
                    for s in range(0, flat.shape[0], _CHUNK):
                        member.write(flat[s : s + _CHUNK].data)
                if (offset + base + pad) % ALIGN:  # pragma: no cover - zipfile changed its headers
                    raise ArtifactError(f"{path}: {key} was not written 64-byte aligned")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _read_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy version {version}")


def load_arrays(path: Path) -> dict[str, npt.NDArray[Any]]:
    """The arrays of the ``.npz`` at ``path``, by key: mapped read-only in place where the member
    allows it, else read (see the module's docstring)."""
    path = Path(path)
    out: dict[str, npt.NDArray[Any]] = {}
    try:
        with path.open("rb") as f, zipfile.ZipFile(f) as zf:
            _read_members(zf, f, out)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{path} is not an .npz archive: {exc}") from exc
    return out


def _read_members(zf: zipfile.ZipFile, f: Any, out: dict[str, npt.NDArray[Any]]) -> None:
    # one read-only mapping of the whole file, shared by its arrays (closed with the last of them)
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else None
    for info in zf.infolist():
        key = info.filename.removesuffix(".npy")
        arr = _mapped(mm, f, info) if mm is not None and info.compress_type == zipfile.ZIP_STORED else None
        if arr is None:
            with zf.open(info) as member:
                arr = np.lib.format.read_array(member, allow_pickle=False)
        out[key] = arr


def _mapped(mm: mmap.mmap, f: Any, info: zipfile.ZipInfo) -> npt.NDArray[Any] | None:
    """The member ``info`` as an array over ``mm``; None where it cannot be mapped."""
    fields = _LOCAL_HEADER.unpack(mm[info.header_offset : info.header_offset + _LOCAL_HEADER.size])
    if fields[0] != b"PK\x03\x04":
        raise ValueError(f"{info.filename}: bad ZIP local header")
    start = info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]
    f.seek(start)
    shape, fortran, dtype = _read_header(f)
    data = f.tell()
    if dtype.hasobject or data % max(dtype.alignment, 1):
        return None
    count = int(np.prod(shape, dtype=np.int64))
    if data + count * dtype.itemsize > start + info.file_size:
        raise ValueError(f"{info.filename}: the array runs past its member")
    if count == 0:
        arr = np.zeros(shape, dtype)
        arr.flags.writeable = False
        return arr
    flat = np.frombuffer(mm, dtype=dtype, count=count, offset=data)
    return flat.reshape(shape, order="F" if fortran else "C")


def exact(values: npt.ArrayLike, dtype: npt.DTypeLike, what: str) -> npt.NDArray[Any]:
    """``values`` as ``dtype``, refusing (``ArtifactError``) any value the cast would change."""
    a = np.asarray(values)
    out = a.astype(dtype)
    same = np.array_equal(out, a) if a.dtype.kind != "f" else np.array_equal(out, a, equal_nan=True)
    if not same:
        bad = np.flatnonzero(out.reshape(-1) != a.reshape(-1))
        first = a.reshape(-1)[bad[0]] if bad.size else "?"
        raise ArtifactError(
            f"{what}: {bad.size} values do not fit {np.dtype(dtype).name} exactly (e.g. {first}); "
            f"they range over [{a.min()}, {a.max()}]"
        )
    return out


def narrowest_int(values: npt.ArrayLike, what: str, signed: bool = True) -> npt.NDArray[Any]:
    """Integers ``values`` in the narrowest type of int8/16/32/64 (unsigned ones without ``signed``)
    that holds them all."""
    a = np.asarray(values)
    kinds = ("int8", "int16", "int32", "int64") if signed else ("uint8", "uint16", "uint32", "uint64")
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for name in kinds:
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            return exact(a, name, what)
    raise ArtifactError(
        f"{what}: values over [{lo}, {hi}] fit no {'signed' if signed else 'unsigned'} integer type"
    )
