"""Carrying bundles forward: rewriting older formats (migrate) and rebuilding engines from their
ONNX source for another TensorRT-RTX release or GPU (rebuild)."""
