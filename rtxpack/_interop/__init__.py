"""Bringing engines made by other tools into bundles (Torch-TensorRT today)."""
