"""Readers for model file formats (NVIDIA pickles, PyTorch checkpoints)."""
