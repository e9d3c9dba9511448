"""Modality types: ModalitySpec, ModalityRegistry and how a modality becomes a network input.

The concrete modalities and `default_registry()` live in `mm2latent.modalities`; storage reads
and writes datasets through a registry a caller passes, typed by these classes.
"""
