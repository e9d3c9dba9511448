"""CPU benchmark of MappingNet training from the parquet vectors: steps/s and data-wait share.

Usage:
    python -m benchmarks.train_mapping                        # 4096 samples, paper MappingNet
    python -m benchmarks.train_mapping --samples 16384 --batch-size 128 --arch tiny

Builds a dataset of `--samples` samples with the paper's vector widths (w 512, farl 512,
flame 159) in a temp directory (8x8 placeholder images, no tar decoding needed), plus fake
512-d mask embeddings, then times: reading the parquet vectors (load_mapping_arrays), and
`--epochs` epochs of training. "data wait" is the time spent inside the batch iterator
(index_select of the in-memory tensors) as a share of the epoch time; target < 10%.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from mm2latent.presets import get_preset
from mm2latent.training.config import MappingTrainCfg
from mm2latent.training.embeddings import write_embedding_shard
from mm2latent.training.loop import fit
from mm2latent.training.mapping import load_mapping_arrays, mapping_job, mapping_net_cfg
from storage.readers import read_vectors
from tests.fabricate_storage import make_index
from tests.fabricate_training import write_learnable_shard
from storage.dataset_index import prepare_output

DIMS = {"w": 512, "flame": 159, "farl": 512}


def build_dataset(url: str, samples: int, per_shard: int) -> None:
    """Shards of learnable vectors at the paper's widths plus random mask embeddings."""
    n_shards = -(-samples // per_shard)
    prepare_output(url, make_index(samples, per_shard, DIMS))
    rng = np.random.default_rng(0)
    for shard in range(n_shards):
        indices = list(range(shard * per_shard, min((shard + 1) * per_shard, samples)))
        write_learnable_shard(url, shard, indices, DIMS, members=())
    table = read_vectors(url, ("key", "shard"))
    for shard in range(n_shards):
        rows = np.flatnonzero(table["shard"] == shard)
        vectors = rng.standard_normal((len(rows), 512)).astype(np.float32)
        write_embedding_shard(url, "mask-ae-v1", shard, [str(k) for k in table["key"][rows]],
                              table["index"][rows], "mask", vectors)


class TimedBatches:
    """Wrap a TrainJob's batch source and add up the seconds spent producing batches."""

    def __init__(self, source) -> None:
        self.source, self.seconds = source, 0.0

    def __call__(self, epoch: int):
        iterator = iter(self.source(epoch))
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                self.seconds += time.perf_counter() - start
                return
            self.seconds += time.perf_counter() - start
            yield batch


def main() -> None:
    """Parse options, build the dataset, time loading and training, print one summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--per-shard", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--arch", choices=("ffhq", "tiny"), default="ffhq", help="preset of the MappingNet")
    p.add_argument("--modality", choices=("mask", "flame"), default="mask")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        build_dataset(root, args.samples, args.per_shard)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        arrays = load_mapping_arrays(root, args.modality, "mask-ae-v1")
        load_s = time.perf_counter() - start
        net_cfg = mapping_net_cfg(get_preset(args.arch).mapping, args.modality)
        cfg = MappingTrainCfg(modality=args.modality, epochs=args.epochs,
                              batch_size=args.batch_size, val_fraction=0.0)
        job = mapping_job(arrays, net_cfg, cfg)
        timed = TimedBatches(job.train_batches)
        job.train_batches = timed
        start = time.perf_counter()
        summary = fit(job, cfg, f"{root}/run", "bench")
        train_s = time.perf_counter() - start
    steps = summary.history[-1].step
    print(f"arch={args.arch} modality={args.modality} samples={args.samples} "
          f"batch={args.batch_size} threads={args.threads}")
    print(f"dataset build {build_s:.1f} s (not part of training); parquet load {load_s * 1e3:.0f} ms")
    print(f"training: {steps} steps in {train_s:.2f} s = {steps / train_s:.1f} steps/s "
          f"({steps * args.batch_size / train_s:.0f} samples/s), incl. one checkpoint per epoch")
    print(f"data wait: {timed.seconds:.3f} s = {100 * timed.seconds / train_s:.2f}% of training time")


if __name__ == "__main__":
    main()
