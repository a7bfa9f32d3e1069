"""Second stage: ranking features (shared with serving), LightGBM lambdarank, ONNX export."""
