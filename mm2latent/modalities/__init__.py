"""Modalities as data: one ModalitySpec per modality, gathered in an explicit ModalityRegistry.

Every layer that used to name modalities (synth stages, shard writer, manifest, readers,
dataset report, training data loading, inference input checks) iterates a registry instead;
a spec's `network_input` (network_input.py) says how it becomes a network input. `default_registry()` builds the project's
registry; a caller (or a test) passes its own to add a modality. Nothing is registered at
import time.
"""
