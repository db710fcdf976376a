"""Building engines ahead of time on the CPU: TensorRT-RTX builds (engine), torch -> ONNX
(export), and reading what an engine's header says (header)."""
