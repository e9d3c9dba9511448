"""Modalities as data: one ModalitySpec per modality, gathered in an explicit ModalityRegistry.

Every layer that used to name modalities (synth stages, shard writer, manifest, readers,
dataset report) iterates a registry instead. `default_registry()` builds the project's
registry; a caller (or a test) passes its own to add a modality. Nothing is registered at
import time.
"""
