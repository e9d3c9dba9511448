"""The bottom layer: errors, fixed widths and modality types shared by every other package.

`mm2latent` (the library) and `storage/` both build on it, so neither needs the other's
internals for them and the two never import each other in a circle. It imports neither
`mm2latent` nor `storage` nor `tasks`/`flows` (tests/test_layering.py checks this).
"""
