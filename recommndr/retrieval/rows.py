"""Factor matrices as a bundle stores them, read as float32 rows.

``QuantisedRows``: a float32 matrix kept as int8 codes with one scale per row (symmetric, per-row
quantisation). Row ``i`` is ``scale[i] * codes[i]`` with ``scale[i] = max |x[i]| / 127`` and ``codes[i]`` the
rounded ``x[i] / scale[i]``: each value is off by at most half a step (``scale[i] / 2``), a quarter
of the memory of float32. The bundle stores the ALS user factors this way (``ALSRetriever.save``);
reading rows gives float32, so the retriever, the fold-in and the ranker's ``als_score`` feature
work on the dequantised vectors as they did on the originals.

``PermutedRows``: a float32 matrix whose rows are stored in another order (the item factors, in
the exact index's scan order, so that the index and the gathers by product share one copy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
I8 = npt.NDArray[np.int8]
LEVELS = 127


class QuantisedRows:
    """Read-only float32 rows from int8 ``codes`` (n x f) and float32 ``scales`` (n)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, codes: I8, scales: F32) -> None:
        if codes.ndim != 2 or scales.shape != codes.shape[:1]:
            raise ValueError(f"codes {codes.shape} and scales {scales.shape} do not match")
        if codes.dtype != np.int8 or scales.dtype != np.float32:
            raise ValueError(f"codes must be int8 and scales float32, not {codes.dtype} and {scales.dtype}")
        self.codes = codes
        self.scales = scales

    @classmethod
    def quantise(cls, x: npt.NDArray[np.floating[Any]], block: int = 65536) -> QuantisedRows:
        """``x`` (n x f floats) quantised row by row, a block of rows at a time."""
        n, f = x.shape
        codes = np.empty((n, f), dtype=np.int8)
        scales = np.empty(n, dtype=np.float32)
        for s in range(0, n, block):
            part = np.asarray(x[s : s + block], dtype=np.float32)
            scale = (np.abs(part).max(axis=1, initial=0.0) / np.float32(LEVELS)).astype(np.float32)
            safe = np.where(scale > 0, scale, np.float32(1.0))
            codes[s : s + block] = np.clip(np.rint(part / safe[:, None]), -LEVELS, LEVELS)
            scales[s : s + block] = scale
        return cls(codes, scales)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.codes.shape[0]), int(self.codes.shape[1]))

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.scales.nbytes)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    def __getitem__(self, rows: Any) -> F32:
        """Dequantised rows: one (an int: a vector), several (an index array or slice: a matrix)."""
        codes = self.codes[rows]
        scales = self.scales[rows]
        out: F32 = codes.astype(np.float32) * (scales[..., None] if codes.ndim == 2 else scales)
        return out

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> F32:
        """The whole matrix, dequantised (a float32 copy: for numpy functions given this object)."""
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def max_error(self) -> F32:
        """The largest possible error of any value in each row (half a quantisation step)."""
        return (self.scales / np.float32(2.0)).astype(np.float32)


class PermutedRows:
    """Read-only float32 rows stored in another order: row ``i`` is ``rows[slot[i]]``, where
    ``order[slot[i]] == i`` (``order``: the row each stored row is)."""

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, rows: F32, order: npt.NDArray[np.integer[Any]]) -> None:
        n = rows.shape[0]
        if rows.ndim != 2 or rows.dtype != np.float32 or order.shape != (n,):
            raise ValueError(f"rows {rows.shape} {rows.dtype} and order {order.shape} do not match")
        slot = np.full(n, -1, dtype=np.int32 if n < 2**31 else np.int64)
        slot[order] = np.arange(n, dtype=slot.dtype)
        if n and int(slot.min()) < 0:
            raise ValueError("order is not a permutation of the rows")
        self.rows = rows
        self.order = order
        self.slot = slot

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.rows.shape[0]), int(self.rows.shape[1]))

    @property
    def nbytes(self) -> int:
        return int(self.rows.nbytes + self.order.nbytes + self.slot.nbytes)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def __getitem__(self, rows: Any) -> F32:
        out: F32 = self.rows[self.slot[rows]]
        return out

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> F32:
        """The whole matrix in its own order (a float32 copy: for numpy functions given this object)."""
        out: F32 = self.rows[self.slot]
        return out if dtype is None else out.astype(dtype)
