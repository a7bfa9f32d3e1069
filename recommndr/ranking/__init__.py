"""Second stage: the candidate set (the retrievers merged), ranking features (shared with
serving), LightGBM lambdarank, ONNX export."""
