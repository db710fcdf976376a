"""The torch modules ``load`` returns, one per backend behind one I/O contract (base): TensorRT-RTX
(tensorrt) and the ONNX Runtime fallback (onnxruntime)."""
