"""The bundle's array files: what save_arrays writes np.load reads, every array 64-byte aligned
and mapped read-only in place when loaded; np.savez files (bundles before format 2) still load;
narrowing refuses what would not survive it."""

from __future__ import annotations

import mmap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recommndr.arrays import exact, load_arrays, narrowest_int, save_arrays
from recommndr.errors import ArtifactError

pytestmark = pytest.mark.unit


def arrays() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "f32": rng.random((1000, 7)).astype(np.float32),
        "i8": rng.integers(-127, 128, (33, 5)).astype(np.int8),
        "i64": np.arange(10**6, 10**6 + 3, dtype=np.int64),
        "a_rather_long_member_name": np.array([True, False, True]),
        "scalar": np.float64(0.25),
        "empty": np.zeros((0, 4), np.uint32),
        "fortran": np.asfortranarray(rng.random((3, 4))),
    }


def mapped(a: np.ndarray) -> bool:
    base: Any = a
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.base if isinstance(base, np.ndarray) else getattr(base, "obj", None)
    return base is not None


def test_what_save_arrays_writes_np_load_reads(tmp_path: Path) -> None:
    want = arrays()
    save_arrays(tmp_path / "x.npz", want)
    with np.load(tmp_path / "x.npz") as z:
        assert set(z.files) == set(want)
        for k, v in want.items():
            np.testing.assert_array_equal(z[k], v)
    assert zipfile.ZipFile(tmp_path / "x.npz").testzip() is None
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_loaded_arrays_are_mapped_read_only_and_64_byte_aligned(tmp_path: Path) -> None:
    want = arrays()
    save_arrays(tmp_path / "x.npz", want)
    got = load_arrays(tmp_path / "x.npz")
    for k, v in want.items():
        a = got[k]
        assert a.dtype == np.asarray(v).dtype and a.shape == np.shape(v), k
        np.testing.assert_array_equal(a, v)
        assert not a.flags.writeable, k
        if a.size:
            assert mapped(a) and a.ctypes.data % 64 == 0, k
    with pytest.raises(ValueError, match="read-only"):
        got["f32"][0, 0] = 1.0


def test_np_savez_files_still_load(tmp_path: Path) -> None:
    want = arrays()
    np.savez(tmp_path / "old.npz", **want)
    got = load_arrays(tmp_path / "old.npz")
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].dtype == np.asarray(v).dtype
    # np.savez leaves members where the ZIP headers end: unaligned ones are read, not mapped
    assert any(not mapped(a) for a in got.values() if a.itemsize > 1 and a.size)


def test_a_rewrite_leaves_arrays_mapped_from_the_old_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    save_arrays(path, {"a": np.arange(1000, dtype=np.int64)})
    old = load_arrays(path)["a"]
    save_arrays(path, {"a": np.zeros(10, dtype=np.int64)})  # renamed into place, not truncated
    np.testing.assert_array_equal(old, np.arange(1000))
    np.testing.assert_array_equal(load_arrays(path)["a"], np.zeros(10))


def test_a_file_that_is_not_an_archive_is_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "x.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"not an \.npz archive"):
        load_arrays(tmp_path / "x.npz")
    with pytest.raises(ValueError, match="object array"):
        save_arrays(tmp_path / "y.npz", {"o": np.array([object()])})


def test_narrowing_is_exact_or_refused() -> None:
    assert narrowest_int(np.array([0, 200]), "x", signed=False).dtype == np.uint8
    assert narrowest_int(np.array([-1, 200]), "x").dtype == np.int16
    assert narrowest_int(np.array([0, 2**31]), "x").dtype == np.int64
    assert narrowest_int(np.array([3.0, 70000.0], np.float32), "x", signed=False).dtype == np.uint32
    with pytest.raises(ArtifactError, match=r"counts: 1 values do not fit uint8 exactly \(e.g. 1.5\)"):
        narrowest_int(np.array([0.0, 1.5], np.float32), "counts", signed=False)
    with pytest.raises(ArtifactError, match=r"counts: values over \[-1, 2\] fit no unsigned integer type"):
        narrowest_int(np.array([-1.0, 2.0]), "counts", signed=False)
    with pytest.raises(ArtifactError, match="ids: 1 values do not fit int32"):
        exact(np.array([1, 2**31]), np.int32, "ids")
    np.testing.assert_array_equal(exact(np.array([1, 2]), np.int32, "ids"), [1, 2])
