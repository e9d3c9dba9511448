"""The fixed set of shards one training run works on.

synth-data keeps completing shards while the nightly retrain runs. A run therefore lists the
complete shards once, when it starts, hashes them once, and passes that snapshot to every step
(autoencoder training, embedding writing, MappingNet training, registration); a shard that
completes meanwhile is left for the next run. Re-reading the list at each step would let the
MappingNet step see a shard the autoencoder step never embedded.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm2latent_core.errors import TrainingError
from mm2latent.training import data
from storage.shard_check import readable_shards


@dataclass(frozen=True)
class ShardSnapshot:
    """The complete shards of a dataset at the start of a run, and their hash."""

    dataset_url: str      # dataset root the shards belong to
    shards: tuple[int, ...]  # complete shard indices, ascending
    dataset_hash: str     # data.dataset_hash over exactly these shards


def take_snapshot(dataset_url: str) -> ShardSnapshot:
    """List and hash the dataset's complete shards once (TrainingError if there are none).

    The listing is the readers' (storage/shard_check.readable_shards): a missing or edited
    dataset.json, a garbled or missing stats file, or a shard of the wrong size is refused here.
    """
    shards = tuple(readable_shards(dataset_url))
    return ShardSnapshot(dataset_url, shards, data.dataset_hash(dataset_url, list(shards)))


def snapshot_for(dataset_url: str, snapshot: ShardSnapshot | None) -> ShardSnapshot:
    """`snapshot` if given (checked to be of this dataset), else a fresh one."""
    if snapshot is None:
        return take_snapshot(dataset_url)
    if snapshot.dataset_url != dataset_url:
        raise TrainingError(f"shard snapshot of {snapshot.dataset_url} passed for {dataset_url}; "
                            "a run's steps must share one dataset.")
    return snapshot
