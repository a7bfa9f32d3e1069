"""The one way the project opens an ONNX Runtime session."""

from __future__ import annotations

from typing import Any


def cpu_session(model: bytes, threads: int = 1) -> Any:
    """A CPU session with ``threads`` intra-op threads (1: the request path; 0: all cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
