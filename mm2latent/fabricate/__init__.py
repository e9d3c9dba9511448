"""Fabricated data for tests and benchmarks: never real weights, never real faces.

`datasets` writes small synth-data datasets (tar shards, parquet manifests, stats) of random
samples in the current on-disk layout; `learnable` writes datasets the training code can
actually fit (shape masks, their outlines, w a smooth function of farl / flame). They live in
the library, not in tests/, so that benchmarks/ can build their inputs without importing tests.
"""
