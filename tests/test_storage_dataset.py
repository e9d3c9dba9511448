"""storage.dataset_index: completion markers, commit order, resume and overwrite checks."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from fsspec.core import url_to_fs

import storage.atomic
from mm2latent_core.errors import DatasetError
from storage.atomic import temp_name
from storage.dataset_index import (
    DatasetIndex,
    check_compatible,
    commit_shard,
    complete_shards,
    is_shard_complete,
    prepare_output,
    shard_name,
    shard_url,
)
from storage.fs import join
from storage.shard_check import check_shard_files
from storage.manifest import ok_row
from storage.shard_writer import TarShardWriter, sample_key
from mm2latent.fabricate.datasets import (LAYOUT, TINY_DIMS, make_index, make_sample, write_dataset,
                                          write_shard)


def _exists(url: str) -> bool:
    fs, path = url_to_fs(url)
    return fs.exists(path)


def test_shard_names_are_zero_padded():
    assert shard_name(7) == "shard-000007.tar"
    assert shard_name(12, "stats.json") == "shard-000012.stats.json"
    with pytest.raises(ValueError, match="valid: tar, parquet, stats.json"):
        shard_name(0, "json")


def test_stats_file_is_committed_last(mem_url, monkeypatch):
    prepare_output(mem_url, make_index(3, 3))
    commits = []
    original = storage.atomic.AtomicFile.commit

    def recording_commit(self):
        # At the moment the stats file becomes visible, tar and parquet must already be there.
        if self.url.endswith(".stats.json"):
            assert _exists(shard_url(mem_url, 0, "tar")) and _exists(shard_url(mem_url, 0, "parquet"))
        else:
            assert not _exists(shard_url(mem_url, 0, "stats.json"))
        original(self)
        commits.append(self.url.rsplit("/", 1)[-1])

    monkeypatch.setattr(storage.atomic.AtomicFile, "commit", recording_commit)
    stats = write_shard(mem_url, 0, [0, 1, 2], failed={1})
    assert commits == ["shard-000000.tar", "shard-000000.parquet", "shard-000000.stats.json"]
    assert (stats.count, stats.ok, stats.failures) == (3, 2, 1)
    fs, path = url_to_fs(shard_url(mem_url, 0, "parquet"))
    assert stats.parquet.sha256 == hashlib.sha256(fs.cat_file(path)).hexdigest()


def test_failed_manifest_write_leaves_shard_incomplete(mem_url):
    with TarShardWriter(shard_url(mem_url, 0)) as writer:
        members, vectors = make_sample(0)
        writer.write(members, sample_key(0))
    result = writer.close()
    bad = ok_row(key=sample_key(0), index=0, shard=0, seed=0, members=result.members[sample_key(0)],
                 vectors={**vectors, "w": np.zeros(3, np.float32)}, layout=LAYOUT)
    with pytest.raises(ValueError, match="'w' has shape"):
        commit_shard(mem_url, 0, result, [bad], {"generate": 1.0}, TINY_DIMS, LAYOUT)
    assert not is_shard_complete(mem_url, 0) and complete_shards(mem_url) == []
    assert not _exists(shard_url(mem_url, 0, "stats.json"))


def test_commit_rejects_rows_that_do_not_match_the_tar(mem_url):
    with TarShardWriter(shard_url(mem_url, 0)) as writer:
        writer.write(make_sample(0)[0], sample_key(0))
    with pytest.raises(ValueError, match="do not match the samples in the tar"):
        commit_shard(mem_url, 0, writer.close(), [], {}, TINY_DIMS, LAYOUT)


def test_complete_shards_needs_a_parsable_stats_file(mem_url):
    write_dataset(mem_url, n_shards=3, per_shard=1)
    fs, root = url_to_fs(mem_url)
    fs.pipe_file(join(root, shard_name(1, "stats.json")), b"{truncated")
    fs.rm(join(root, shard_name(2, "stats.json")))
    assert complete_shards(mem_url) == [0]
    assert is_shard_complete(mem_url, 0) and not is_shard_complete(mem_url, 1)


def test_check_compatible_lists_every_differing_field():
    old = make_index(6, 3).fingerprint()
    new = make_index(6, 3, parameters={"truncation": 0.5, "image_size": 8, "model": {"w_dim": 32}},
                     weights={"stylegan2.tiny": "f" * 64}).fingerprint()
    with pytest.raises(DatasetError) as info:
        check_compatible(old, new, "memory://ds")
    text = str(info.value)
    assert "memory://ds" in text and "--overwrite" in text and "--out" in text
    assert "parameters.truncation: existing 0.7 vs requested 0.5" in text
    assert "parameters.model.w_dim: existing 16 vs requested 32" in text
    assert "weights.stylegan2.tiny: existing" in text
    assert "image_size" not in text and "preset" not in text
    check_compatible(old, make_index(60, 3).fingerprint())  # growing the dataset is compatible


def test_prepare_output_resumes_refuses_and_overwrites(mem_url):
    write_dataset(mem_url, n_shards=2, per_shard=2)
    fs, root = url_to_fs(mem_url)
    fs.pipe_file(join(root, temp_name("shard-000002.tar")), b"crashed")
    assert prepare_output(mem_url, make_index(6, 2)) == [0, 1]  # resume: skip complete shards
    assert not any(".tmp-" in p for p in fs.ls(root, detail=False))
    assert DatasetIndex.read(mem_url).num_samples == 6
    with pytest.raises(DatasetError, match="samples_per_shard: existing 2 vs requested 3"):
        prepare_output(mem_url, make_index(6, 3))
    assert prepare_output(mem_url, make_index(6, 3), overwrite=True) == []
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)] == ["dataset.json"]


def test_dataset_index_round_trip_and_malformed_file(mem_url):
    index = make_index(5, 2)
    index.write(mem_url)
    assert DatasetIndex.read(mem_url) == index
    assert json.loads(url_to_fs(join(mem_url, "dataset.json"))[0].cat_file(
        url_to_fs(join(mem_url, "dataset.json"))[1]))["shards"][-1] == "shard-000002.tar"
    url_to_fs(mem_url)[0].pipe_file(url_to_fs(join(mem_url, "dataset.json"))[1], b'{"preset": 1}')
    with pytest.raises(DatasetError, match="dataset.json: malformed dataset index"):
        DatasetIndex.read(mem_url)
    with pytest.raises(DatasetError, match="not a dataset"):
        DatasetIndex.read(join(mem_url, "nothing-here"))


def test_verify_shard_detects_a_corrupted_tar(mem_url):
    write_dataset(mem_url, n_shards=1, per_shard=2)
    check_shard_files(mem_url, [0])
    fs, path = url_to_fs(shard_url(mem_url, 0))
    data = bytearray(fs.cat_file(path))
    data[600] ^= 1
    fs.pipe_file(path, bytes(data))
    with pytest.raises(DatasetError, match="shard 0: shard-000000.tar has another sha256"):
        check_shard_files(mem_url, [0])
