"""Storage faults: spawn-safe readers, leftovers of killed writers, full disks (local / memory://)."""

from __future__ import annotations

import errno
import os
import pickle
import time

import torch

from mm2latent.modalities.registry import default_registry
from storage.atomic import (STALE_WRITE_S, atomic_write_bytes, clean_interrupted_writes, temp_name)
from storage.fs import as_user_error
from storage.readers import iter_samples
from mm2latent.fabricate.datasets import write_dataset


def test_iter_samples_pickles_and_runs_in_spawned_dataloader_workers(tmp_path):
    write_dataset(str(tmp_path), n_shards=2, per_shard=2)
    pipeline = iter_samples(str(tmp_path), modalities=("w", "mask"), split_by_node=False,
                            registry=default_registry())
    pickle.dumps(pipeline)  # what spawn does to hand the dataset to a worker
    loader = torch.utils.data.DataLoader(pipeline, batch_size=None, num_workers=1,
                                         multiprocessing_context="spawn")
    assert sorted(s["index"] for s in loader) == [0, 1, 2, 3]


def _aged(path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_clean_interrupted_writes_reaches_subdirectories_and_spares_young_files(tmp_path):
    old = tmp_path / "runs" / "mask-ae" / temp_name("ckpt-000001.pt")
    young = tmp_path / "registry" / temp_name("registry.json")
    for path in (old, young):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"partial")
    _aged(old, 2 * STALE_WRITE_S)
    atomic_write_bytes(str(tmp_path / "runs" / "keep.json"), b"{}")
    removed = clean_interrupted_writes(str(tmp_path), older_than_s=STALE_WRITE_S)
    assert removed == [str(old)]
    assert young.exists() and (tmp_path / "runs" / "keep.json").exists()


def test_training_clean_up_task_removes_old_leftovers_under_out_and_registry(tmp_path):
    from tasks.storage import clean_interrupted

    leftovers = [tmp_path / "runs" / "mapping-mask-1" / temp_name("ckpt.pt"),
                 tmp_path / "registry" / temp_name("registry.json")]
    for path in leftovers:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
        _aged(path, 2 * STALE_WRITE_S)
    clean_interrupted.fn([str(tmp_path / "runs"), str(tmp_path / "registry")])
    assert not any(p.exists() for p in leftovers)


def test_disk_full_becomes_one_line_with_the_resume_hint():
    error = OSError(errno.ENOSPC, "No space left on device", "/data/ds/shard-000003.tar")
    wrapped = RuntimeError("task failed")
    wrapped.__cause__ = error
    message = str(as_user_error(wrapped, ["/data/ds"]))
    assert "disk full while writing /data/ds/shard-000003.tar" in message
    assert "re-run the same command" in message and "\n" not in message
    assert as_user_error(ValueError("a bug"), ["/data/ds"]) is None
