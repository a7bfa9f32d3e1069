"""The item-factor index served to the API: an ONNX graph MatMul + Add(mask) + TopK.

Chosen by measurement (benchmarks/bench_train.py): exact float32 top-k over 100K x 64 factors in
about a millisecond on one thread, run by the ONNX Runtime the ranker already needs (no second
native dependency in the Functions package). Products ALS has not seen carry a -inf mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from recommndr.onnx_session import cpu_session

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
OPSET = 15
INT8_MIN_RECALL = 0.99


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


def build_index(item_factors: F32, mask: F32) -> bytes:
    """ONNX model: inputs user (B x F float32), k (1 int64); outputs scores, items (B x k)."""
    from onnx import helper, numpy_helper

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


def build_int8_index(item_factors: F32, mask: F32) -> bytes:
    """The int8 variant measured against the float32 index (benchmarks/bench_train.py): items
    quantised per row (symmetric int8), the user vector quantised on the fly
    (DynamicQuantizeLinear), MatMulInteger, rescaled, masked, TopK. ``train`` keeps it only when
    its recall@200 against float32 is at least ``INT8_MIN_RECALL`` (measured: 0.995 at full scale)."""
    from onnx import TensorProto, helper, numpy_helper

    n, f = item_factors.shape
    scale = np.maximum(np.abs(item_factors).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.round(item_factors / scale[:, None]), -127, 127).astype(np.int8)
    return _model(
        [
            helper.make_node("DynamicQuantizeLinear", ["user"], ["uq", "us", "uz"]),
            helper.make_node("MatMulInteger", ["uq", "items_q_t", "uz", "izero"], ["acc"]),
            helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["accf", "item_scale"], ["s1"]),
            helper.make_node("Mul", ["s1", "us"], ["raw"]),
            helper.make_node("Add", ["raw", "mask"], ["masked"]),
        ],
        "recommndr_retrieval_int8",
        f,
        [
            numpy_helper.from_array(np.ascontiguousarray(q.T), "items_q_t"),
            numpy_helper.from_array(np.zeros(n, dtype=np.int8), "izero"),
            numpy_helper.from_array(scale.astype(np.float32).reshape(1, n), "item_scale"),
            numpy_helper.from_array(mask.astype(np.float32).reshape(1, n), "mask"),
        ],
    )


def index_recall(model: bytes, als: object, k: int = 200, n_users: int = 200, seed: int = 0) -> float:
    """Mean recall@k of an index against the exact float32 scores, on sampled known users."""
    from recommndr.retrieval.als import ALSRetriever

    assert isinstance(als, ALSRetriever)
    n = als.user_factors.shape[0]
    if n == 0:
        return 1.0
    users = als.user_factors[np.random.default_rng(seed).choice(n, min(n_users, n), replace=False)]
    k = min(k, int(als.item_known.sum()))
    exact = np.argsort(-als.scores(users), axis=1)[:, :k]
    index = OnnxIndex(model, threads=1)
    # one user per call, as the API queries it (an int8 index quantises each call's batch as a whole)
    found = [np.isin(index.search(users[j : j + 1], k)[1][0], exact[j]).mean() for j in range(users.shape[0])]
    return float(np.mean(found))
