"""Training: autoencoders, MappingNets, embeddings, the model registry and the generic loop.

Import the submodules directly (config, data, loop, autoencoders, embeddings, mapping,
registry, plots, pipeline); this package imports nothing on its own.
"""
