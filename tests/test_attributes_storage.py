"""The attributes layout: one parquet per dataset shard per producer, read back joined per shard."""

from __future__ import annotations

import numpy as np
import pytest

from mm2latent.fabricate.datasets import write_dataset, write_shard
from mm2latent_core.errors import ConfigError, DatasetError
from storage.attributes import (AttributeColumnInfo, AttributeDescriptor, attribute_dirs,
                                attributes_url, iter_attribute_shards, write_attribute_shard,
                                write_descriptor)
from storage.derived import shard_tar_sha256
from storage.manifest import read_manifest
from storage.dataset_index import shard_url


def _descriptor(source: str, names: list[str], digest: str) -> AttributeDescriptor:
    return AttributeDescriptor(
        source=source, version="1", digest=digest, description=f"{source} test",
        columns=[AttributeColumnInfo(name=f"{source}.{n}", unit="u", description=n) for n in names],
        producer={"source": source})


def _write(dataset: str, descriptor: AttributeDescriptor, offset: float) -> None:
    write_descriptor(dataset, descriptor)
    for shard in (0, 1):
        manifest = read_manifest(shard_url(dataset, shard, "parquet"), ["index", "status"])
        indices = manifest["index"].to_numpy()
        ok = np.array([s == "ok" for s in manifest["status"].to_pylist()])
        values = {c.name: indices.astype(np.float32) + offset for c in descriptor.columns}
        write_attribute_shard(dataset, descriptor, shard, indices, values, ok,
                              shard_tar_sha256(dataset, shard))


@pytest.fixture
def dataset(tmp_path):
    url = str(tmp_path / "data")
    write_dataset(url, n_shards=2, per_shard=3, failed={4})
    _write(url, _descriptor("a", ["x", "y"], "1" * 64), 0.5)
    _write(url, _descriptor("b", ["z"], "2" * 64), 10.0)
    return url


def test_shards_are_read_one_at_a_time_joined_on_index_with_nulls_for_failed_samples(dataset):
    assert attribute_dirs(dataset) == ["a-111111111111", "b-222222222222"]
    shards = list(iter_attribute_shards(dataset))
    assert [s for s, _ in shards] == [0, 1]
    table = shards[1][1]
    assert table.column_names == ["index", "a.x", "a.y", "b.z"]
    assert table["index"].to_pylist() == [3, 4, 5]
    assert table["a.x"].to_pylist() == [3.5, None, 5.5]  # sample 4 failed
    assert table["b.z"].to_pylist() == [13.0, None, 15.0]
    only_b = dict(iter_attribute_shards(dataset, sources=["b"]))
    assert only_b[0].column_names == ["index", "b.z"]


def test_a_rewritten_shard_makes_its_attributes_stale_and_the_reader_names_the_fix(dataset):
    write_shard(dataset, 1, [3, 4, 5], failed=set())  # new tar bytes: sample 4 now ok
    reader = iter_attribute_shards(dataset, sources=["a"])
    assert next(reader)[0] == 0  # shard 0 is still fresh
    with pytest.raises(DatasetError, match=r"shard-000001.parquet: stale: shard 1 was rewritten.*"
                                            r"rerun `mm2latent dataset attributes"):
        next(reader)


def test_a_damaged_or_missing_file_is_refused_with_the_fix(dataset):
    url = attributes_url(dataset, "b-222222222222", 0)
    with open(url, "wb") as f:
        f.write(b"not parquet")
    with pytest.raises(DatasetError, match="shard-000000.parquet: damaged"):
        list(iter_attribute_shards(dataset, sources=["b"]))
    import os
    os.remove(url)
    with pytest.raises(DatasetError, match="missing .*rerun `mm2latent dataset attributes"):
        list(iter_attribute_shards(dataset, sources=["b"]))


def test_a_different_descriptor_is_refused_in_an_existing_folder(dataset):
    other = _descriptor("a", ["x"], "1" * 64)  # same folder name, other columns
    with pytest.raises(DatasetError, match="describes another producer"):
        write_descriptor(dataset, other)


class _Names:
    names = ("a", "b", "c")


def test_unknown_and_absent_sources_are_named(dataset):
    with pytest.raises(ConfigError, match="unknown attribute source 'nope'; known: a, b, c"):
        list(iter_attribute_shards(dataset, sources=["nope"], registry=_Names()))
    with pytest.raises(DatasetError, match="no 'c' attributes"):
        list(iter_attribute_shards(dataset, sources=["c"], registry=_Names()))
