"""Exact top-k over the ALS item factors.

``build_index``/``OnnxIndex``: the portable index registered with the model, an ONNX graph MatMul +
Add(mask) + TopK (products ALS has not seen carry a -inf mask); training checks it against numpy
and it precomputes similar items.

``NormBoundIndex``: what the API queries, one shopper at a time. ALS item norms are very skewed
(at full scale the median product's norm is 1% of the 99th percentile's), and a score u.v is at
most |u||v|, so scanning products in descending norm and stopping once no unscanned product can
beat the k-th best gives the exact top k after reading about a tenth of the factors
(benchmarks/bench_train.py --only index). It is exact with respect to the vectors it is given and
the float32 item factors it scans: a bundle's user factors are int8 with a scale per row
(``retrieval/rows.py``), so for a known user it returns the exact top k of the dequantised
vector, which may differ from the float32 vector's at the k-th place (measured: 99.6% of the
top 200 agree at full scale). The products, their factors and norms in scan order are stored in
the bundle (``ALSRetriever.save``), so the API maps them instead of building a copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.onnx_session import cpu_session
from recommndr.retrieval.rows import PermutedRows

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
OPSET = 15


def _model(nodes: list[Any], name: str, n_factors: int, initializers: list[Any]) -> bytes:
    """A checked ONNX model: inputs user (B x F float32) and k (1 int64); outputs scores and
    items (B x k), ending in ``TopK(masked, k)``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            *nodes,
            helper.make_node("TopK", ["masked", "k"], ["scores", "items"], axis=-1, largest=1, sorted=1),
        ],
        name,
        [
            helper.make_tensor_value_info("user", TensorProto.FLOAT, ["batch", n_factors]),
            helper.make_tensor_value_info("k", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "k_out"]),
            helper.make_tensor_value_info("items", TensorProto.INT64, ["batch", "k_out"]),
        ],
        initializer=initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="recommndr"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def build_index(item_factors: F32 | PermutedRows, mask: F32) -> bytes:
    """ONNX model: inputs user (B x F float32), k (1 int64); outputs scores, items (B x k)."""
    from onnx import helper, numpy_helper

    item_factors = np.asarray(item_factors)
    n, f = item_factors.shape
    return _model(
        [
            helper.make_node("MatMul", ["user", "item_factors_t"], ["raw"]),
            helper.make_node("Add", ["raw", "mask"], ["masked"]),
        ],
        "recommndr_retrieval",
        f,
        [
            numpy_helper.from_array(np.ascontiguousarray(item_factors.T, dtype=np.float32), "item_factors_t"),
            numpy_helper.from_array(mask.astype(np.float32).reshape(1, n), "mask"),
        ],
    )


class OnnxIndex:
    def __init__(self, model: bytes, threads: int = 1) -> None:
        self.session = cpu_session(model, threads)

    def search(self, users: F32, k: int) -> tuple[F32, I64]:
        scores, items = self.session.run(
            ["scores", "items"],
            {"user": np.ascontiguousarray(users, dtype=np.float32), "k": np.array([k], np.int64)},
        )
        return np.asarray(scores), np.asarray(items)


class NormBoundIndex:
    """Exact top-k by inner product over the known products, scanned in descending norm order in
    growing blocks until the bound |u||v| of the next product is below the k-th best score.

    What it scans (:meth:`sort`: the products, their factors and norms in that order) is built
    from the item factors, or given as it was saved (:meth:`from_sorted`): a bundle stores it
    beside the factors, so an API process maps it from the file instead of holding its own copy."""

    def __init__(self, item_factors: F32, item_known: npt.NDArray[np.bool_], first_block: int = 8192) -> None:
        self._set(*self.sort(item_factors, item_known), first_block)

    @staticmethod
    def sort(item_factors: F32, item_known: npt.NDArray[np.bool_]) -> tuple[I64, F32, F64]:
        """The known products in descending norm order (ties in product order), their factors
        (float32) and norms (float64)."""
        known = np.flatnonzero(item_known)
        norms = np.linalg.norm(item_factors[known].astype(np.float64), axis=1)
        order = np.argsort(-norms, kind="stable")
        items = known[order].astype(np.int64)
        return items, np.ascontiguousarray(item_factors[items], dtype=np.float32), norms[order]

    @classmethod
    def from_sorted(
        cls, items: npt.NDArray[np.integer[Any]], factors: F32, norms: F64, first_block: int = 8192
    ) -> NormBoundIndex:
        """The index over what :meth:`sort` returned (arrays used as they are: mapped ones stay mapped)."""
        if not (items.shape[0] == factors.shape[0] == norms.shape[0]) or factors.dtype != np.float32:
            raise ValueError(
                f"index arrays do not match: {items.shape}, {factors.shape} {factors.dtype}, {norms.shape}"
            )
        if norms.shape[0] > 1 and bool(np.any(np.diff(norms) > 0)):
            raise ValueError("index norms are not in descending order")
        index = cls.__new__(cls)
        index._set(items, factors, norms, first_block)
        return index

    def _set(self, items: npt.NDArray[np.integer[Any]], factors: F32, norms: F64, first_block: int) -> None:
        self.items = items
        self.factors = factors
        self.norms = norms
        # ascending, for searchsorted; a hair of slack so float32 rounding never prunes a tie
        self.neg_norms = (-np.asarray(norms, dtype=np.float64) * (1 + 1e-5)).astype(np.float64)
        self.first_block = first_block

    def search_one(self, user: F32, k: int) -> tuple[F32, I64]:
        """Scores and product positions of the best min(k, known products), best first."""
        n = self.items.shape[0]
        k = min(k, n)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        norm = float(np.sqrt(np.dot(user, user)))
        if norm == 0:  # every score is 0
            return np.zeros(k, np.float32), self.items[:k].astype(np.int64)
        top_s = np.zeros(0, np.float32)
        top_i = np.zeros(0, np.int64)
        start, end = 0, min(self.first_block, n)
        while start < n:
            vals = np.concatenate([top_s, self.factors[start:end] @ user])
            idx = np.concatenate([top_i, np.arange(start, end, dtype=np.int64)])
            if vals.shape[0] > k:
                kth = np.partition(vals, vals.shape[0] - k)[vals.shape[0] - k]
                keep = np.flatnonzero(vals >= kth)
                vals, idx = vals[keep], idx[keep]
            top_s, top_i, start = vals, idx, end
            if start >= n:
                break
            limit = n  # products [0, limit) may still beat the k-th best
            if top_s.shape[0] >= k and (worst := float(top_s.min())) > 0:
                limit = int(np.searchsorted(self.neg_norms, -worst / norm, side="right"))
            end = min(limit, 2 * start, n)
            if end <= start:
                break
        order = np.argsort(-top_s, kind="stable")[:k]
        return top_s[order], self.items[top_i[order]].astype(np.int64)
