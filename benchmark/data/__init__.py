"""Data: reading images with their geometry, the preprocessing cache, the built-in phantoms,
the pretraining pool, cases and splits, label-fraction subsets, dataset verification, and
atomic file writing. Imports nothing of the layers above it.
"""
