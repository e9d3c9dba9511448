"""Training never runs on damaged or absurd inputs.

Before training reads a dataset, the files it will read are re-hashed against the digests in
each shard's stats file (a flipped bit in a parquet page can turn a vector into 1e37 while the
file still parses). After reading, every vector must be finite and no larger in magnitude than
ABSURD; the first offender is named by shard and sample index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mm2latent_core.errors import DatasetError, TrainingError
from storage.shard_check import check_shard_files, readable_shards

# |value| above this is no StyleGAN2 w, unit FaRL vector, 3DMM code or autoencoder embedding.
ABSURD = 1e4
_FIX = ("Fix: re-run the synth-data command that made the dataset with --verify (it rewrites "
        "damaged shards byte-identical), then train again.")


def check_input_files(dataset_url: str, parts: tuple[str, ...],
                      shards: Sequence[int] | None = None) -> None:
    """TrainingError naming each shard (default: every complete one) whose `parts` ("tar",
    "parquet") differ from the sha256 digests in its stats file.

    The readers' own check (storage/shard_check.py), run once up front so that training fails
    before it decodes anything; the readers called afterwards pass check=False.
    """
    try:
        check_shard_files(dataset_url, readable_shards(dataset_url, shards), parts)
    except DatasetError as e:
        raise TrainingError(str(e).replace("damaged dataset", "damaged training input", 1)) from e


def check_vectors(dataset_url: str, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    """TrainingError at the first non-finite or absurd value among `names` (arrays (N, D)),
    naming its shard (arrays["shard"], (N,)) and sample index (arrays["index"], (N,))."""
    for name in names:
        values = arrays[name]
        bad_rows = np.flatnonzero(~(np.abs(values) <= ABSURD).all(axis=1))  # NaN fails <= too
        if len(bad_rows):
            row = int(bad_rows[0])
            worst = values[row][np.argmax(~(np.abs(values[row]) <= ABSURD))]
            raise TrainingError(
                f"{dataset_url}: shard {int(arrays['shard'][row])}, sample index "
                f"{int(arrays['index'][row])}: {name!r} holds {worst!r} (allowed: finite, |x| <= "
                f"{ABSURD:g}); {len(bad_rows)} row(s) affected. {_FIX}")
