"""Encoding of one generated sample into its WebDataset members (extension -> bytes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mm2latent_core.modalities.spec import METADATA_EXT, ModalitySpec
from storage.shard_writer import encode_json


def encode_members(specs: Sequence[ModalitySpec], values: Mapping[str, np.ndarray],
                   image_format: str, metadata: dict) -> dict[str, bytes]:
    """The tar members of one sample: each spec's member, then the .json metadata."""
    members = dict(spec.encode(values[spec.name], image_format) for spec in specs)
    members[METADATA_EXT] = encode_json(metadata)
    return members
