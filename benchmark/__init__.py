"""Benchmark self-supervised pretraining for 3D medical imaging (Models Genesis and baselines)."""

__version__ = "0.1.0"
