"""storage.readers: decoded WebDataset samples and parquet-only vectors over complete shards."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import webdataset as wds
from fsspec.core import url_to_fs
from PIL import Image

from mm2latent_core.errors import DatasetError
from mm2latent.modalities.registry import default_registry
from storage.dataset_index import shard_name
from storage.fs import join
from storage.lease import acquire_lease
from storage.readers import iter_samples, read_vectors, read_vectors_table
from mm2latent.fabricate.datasets import make_sample, write_dataset, write_shard

ALL = ("image", "mask", "sketch", "w", "flame", "farl", "json")


@pytest.fixture
def dataset(mem_url):
    """memory:// dataset: 2 complete shards of 3 samples (index 4 failed) + 1 incomplete shard
    that a live synth-data run is committing (its tar and parquet exist, its stats file not yet;
    without the run's lease, readers refuse such a shard: tests/test_reader_checks.py)."""
    write_dataset(mem_url, n_shards=2, per_shard=3, failed={4})
    write_shard(mem_url, 2, [6, 7])
    fs, root = url_to_fs(mem_url)
    fs.rm(join(root, shard_name(2, "stats.json")))
    acquire_lease(mem_url, "synth-data")
    return mem_url


def _decoded_png(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


def test_iter_samples_decodes_every_modality_from_memory(dataset):
    samples = list(iter_samples(dataset, modalities=ALL, split_by_node=False, split_by_worker=False,
                                registry=default_registry()))
    assert [s["index"] for s in samples] == [0, 1, 2, 3, 5]  # failed 4 and incomplete shard 2 absent
    for s in samples:
        members, vectors = make_sample(s["index"])
        assert s["key"] == f"{s['index']:09d}"
        assert s["image"].dtype == torch.float32 and s["image"].shape == (3, 8, 8)
        expected = torch.from_numpy(_decoded_png(members["png"])).permute(2, 0, 1).float() / 255
        torch.testing.assert_close(s["image"], expected)
        assert s["mask"].dtype == torch.int64 and s["mask"].shape == (8, 8)
        assert torch.equal(s["mask"], torch.from_numpy(_decoded_png(members["mask.png"])).long())
        assert s["sketch"].shape == (1, 8, 8) and set(s["sketch"].unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(s["sketch"][0], torch.from_numpy(_decoded_png(members["sketch.png"]) == 255).float())
        for name, dim in (("w", 16), ("flame", 159), ("farl", 8)):
            assert s[name].dtype == torch.float32 and s[name].shape == (dim,)
            assert torch.equal(s[name], torch.from_numpy(vectors[name]))
        assert s["json"] == {"caption": f"face {s['index']}", "index": s["index"]}


def test_iter_samples_decodes_only_requested_modalities(dataset):
    sample = next(iter(iter_samples(dataset, modalities=("w",), split_by_node=False,
                                    registry=default_registry())))
    assert set(sample) == {"key", "index", "w"}
    with pytest.raises(ValueError, match="unknown modalities \\['depth'\\]"):
        iter_samples(dataset, modalities=("depth",), registry=default_registry())


def test_local_paths_work_too(tmp_path):
    write_dataset(str(tmp_path), n_shards=1, per_shard=2)
    keys = [s["key"] for s in iter_samples(str(tmp_path), modalities=("json",),
                                           registry=default_registry())]
    assert keys == ["000000000", "000000001"]


@pytest.mark.parametrize("world_size,num_workers", [(2, 1), (1, 3), (2, 2)])
def test_node_and_worker_splits_are_disjoint_and_cover_all(mem_url, monkeypatch, world_size, num_workers):
    write_dataset(mem_url, n_shards=5, per_shard=1)
    seen = []
    for rank in range(world_size):
        for worker in range(num_workers):
            monkeypatch.setenv("RANK", str(rank))
            monkeypatch.setenv("WORLD_SIZE", str(world_size))
            monkeypatch.setenv("WORKER", str(worker))
            monkeypatch.setenv("NUM_WORKERS", str(num_workers))
            seen.append({s["index"] for s in iter_samples(mem_url, modalities=("w",),
                                                          registry=default_registry())})
    assert sum(len(part) for part in seen) == 5 and set().union(*seen) == set(range(5))
    assert all(len(part) > 0 for part in seen[:5])


def test_dataloader_workers_get_disjoint_shards(tmp_path):
    write_dataset(str(tmp_path), n_shards=4, per_shard=2)
    loader = torch.utils.data.DataLoader(
        iter_samples(str(tmp_path), modalities=("w",), split_by_node=False,
                     registry=default_registry()), batch_size=None, num_workers=2
    )
    indices = [s["index"] for s in loader]
    assert sorted(indices) == list(range(8))


def test_shard_shuffle_is_seeded(mem_url):
    write_dataset(mem_url, n_shards=5, per_shard=1)

    def order(seed):
        return [s["index"] for s in iter_samples(mem_url, modalities=("w",), shuffle=5, seed=seed,
                                                     registry=default_registry())]

    assert order(1) == order(1) and sorted(order(1)) == list(range(5))
    assert len({tuple(order(s)) for s in range(6)}) > 1


def test_read_vectors_reads_ok_rows_of_complete_shards_in_index_order(dataset):
    out = read_vectors(dataset, columns=("w", "farl", "seed"))
    assert out["index"].tolist() == [0, 1, 2, 3, 5]
    assert out["w"].dtype == np.float32 and out["w"].shape == (5, 16)
    assert out["farl"].dtype == np.float32 and out["farl"].shape == (5, 8)
    np.testing.assert_array_equal(out["w"][4], make_sample(5)[1]["w"])
    np.testing.assert_array_equal(out["farl"][0], make_sample(0)[1]["farl"])
    assert out["seed"].dtype == np.int64
    table = read_vectors_table(dataset, columns=("flame",))
    assert table.column_names == ["index", "key", "flame"] and table.num_rows == 5


def test_read_vectors_errors_name_the_dataset(dataset, mem_url):
    with pytest.raises(DatasetError, match=r"no column\(s\) \['clip'\]; available: .*'farl'"):
        read_vectors(dataset, columns=("clip",))
    with pytest.raises(DatasetError, match="empty/dataset.json: not found, so .* is not a dataset"):
        read_vectors(join(mem_url, "empty"))
    with pytest.raises(DatasetError, match="empty/dataset.json: not found"):
        iter_samples(join(mem_url, "empty"), registry=default_registry())
    write_dataset(join(mem_url, "unstarted"), n_shards=0)  # dataset.json only
    with pytest.raises(DatasetError, match="no complete shards"):
        read_vectors(join(mem_url, "unstarted"))


def test_shards_are_readable_by_stock_webdataset(tmp_path):
    write_dataset(str(tmp_path), n_shards=1, per_shard=2)
    stock = wds.WebDataset(str(tmp_path / shard_name(0)), shardshuffle=False, nodesplitter=None)
    samples = list(stock)
    assert [s["__key__"] for s in samples] == ["000000000", "000000001"]
    assert set(samples[0]) - {"__key__", "__url__", "__local_path__"} == {
        "png", "mask.png", "sketch.png", "w.npy", "flame.npy", "farl.npy", "json"}
