"""storage.shard_writer and storage.manifest: deterministic tars and parquet manifests."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pyarrow as pa
import pytest
from fsspec.core import url_to_fs

from storage.fs import join
from storage.manifest import (
    failed_row,
    manifest_schema,
    ok_row,
    read_manifest,
    write_manifest,
)
from storage.shard_writer import ShardSink, TarShardWriter, encode_npy, sample_key
from mm2latent.fabricate.datasets import LAYOUT, TINY_DIMS, make_sample


def _write_tar(url: str, indices: list[int]):
    with TarShardWriter(url) as writer:
        for i in indices:
            writer.write(make_sample(i)[0], sample_key(i))
    return writer.close()


def _cat(url: str) -> bytes:
    fs, path = url_to_fs(url)
    return fs.cat_file(path)


def test_same_samples_give_byte_identical_tars(mem_url, tmp_path):
    a = _write_tar(join(mem_url, "a.tar"), [3, 1, 2])
    b = _write_tar(str(tmp_path / "b.tar"), [3, 1, 2])
    data = _cat(a.url)
    assert data == _cat(b.url)
    assert a.sha256 == b.sha256 == hashlib.sha256(data).hexdigest() and a.size == len(data)
    # A different sample order is a different shard: order is part of the content.
    assert _write_tar(join(mem_url, "c.tar"), [1, 2, 3]).sha256 != a.sha256


def test_tar_headers_are_fixed_and_members_sorted_per_sample(mem_url):
    result = _write_tar(join(mem_url, "s.tar"), [7, 5])
    with tarfile.open(fileobj=io.BytesIO(_cat(result.url))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    exts = sorted(make_sample(7)[0])
    assert names == [f"000000007.{e}" for e in exts] + [f"000000005.{e}" for e in exts]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}
    assert result.members["000000005"]["w.npy"].sha256 == hashlib.sha256(make_sample(5)[0]["w.npy"]).hexdigest()


def test_npy_members_load_without_pickle(mem_url):
    result = _write_tar(join(mem_url, "s.tar"), [0, 1])
    with tarfile.open(fileobj=io.BytesIO(_cat(result.url))) as tar:
        npys = [m for m in tar.getmembers() if m.name.endswith(".npy")]
        arrays = [np.load(io.BytesIO(tar.extractfile(m).read()), allow_pickle=False) for m in npys]
    assert len(arrays) == 6 and all(a.dtype == np.float32 for a in arrays)


def test_writer_rejects_pickled_npy_dotted_keys_and_pickle_members(mem_url):
    writer = TarShardWriter(join(mem_url, "bad.tar"))
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="'w.npy' is not a pickle-free .npy"):
        writer.write({"w.npy": buffer.getvalue()}, "000000000")
    with pytest.raises(ValueError, match="no dots"):
        writer.write({"json": "{}"}, "000.1")
    with pytest.raises(ValueError, match="pickle-based member 'state.pth'"):
        writer.write({"state.pth": b"x"}, "000000001")
    writer.abort()
    assert not url_to_fs(mem_url)[0].exists(url_to_fs(join(mem_url, "bad.tar"))[1])


def test_exception_mid_shard_leaves_nothing(mem_url):
    url = join(mem_url, "shard-000000.tar")
    with pytest.raises(RuntimeError, match="stage crashed"):
        with TarShardWriter(url) as writer:
            writer.write(make_sample(0)[0], sample_key(0))
            raise RuntimeError("stage crashed")
    fs, root = url_to_fs(mem_url)
    assert fs.ls(root, detail=False) == []  # neither the tar nor its temp file


def test_tar_writer_satisfies_protocol(mem_url):
    writer = TarShardWriter(join(mem_url, "p.tar"))
    assert isinstance(writer, ShardSink)
    assert writer.close().count == 0  # an all-failed shard still gets a valid (empty) tar
    with tarfile.open(fileobj=io.BytesIO(_cat(join(mem_url, "p.tar")))) as tar:
        assert tar.getmembers() == []


def _rows(indices: list[int], failed: set[int]) -> list[dict]:
    result = _write_tar(f"memory://rows-{min(indices)}-{len(indices)}/s.tar", [i for i in indices if i not in failed])
    rows = []
    for i in indices:
        key = sample_key(i)
        if i in failed:
            rows.append(failed_row(key=key, index=i, shard=0, seed=10 + i, error="ValueError: no face"))
        else:
            rows.append(ok_row(key=key, index=i, shard=0, seed=10 + i, members=result.members[key],
                               vectors=make_sample(i)[1], layout=LAYOUT))
    return rows


def test_manifest_round_trip_with_fixed_size_lists_and_failed_rows(mem_url):
    url = join(mem_url, "shard-000000.parquet")
    rows = _rows([2, 0, 1], failed={1})
    write_manifest(url, rows, TINY_DIMS, LAYOUT)
    table = read_manifest(url)
    assert table.schema.equals(manifest_schema(TINY_DIMS, LAYOUT), check_metadata=True)
    assert table.schema.field("w").type == pa.list_(pa.float32(), 16)
    assert table["index"].to_pylist() == [0, 1, 2]  # stored sorted by index
    assert table["status"].to_pylist() == ["ok", "failed", "ok"]
    assert table["error"].to_pylist() == [None, "ValueError: no face", None]
    failed = table.slice(1, 1).to_pylist()[0]
    assert failed["w"] is None and failed["image_sha256"] is None and failed["image_ext"] is None
    w2 = np.asarray(table["w"][2].as_py(), dtype=np.float32)
    np.testing.assert_array_equal(w2, make_sample(2)[1]["w"])
    assert table["image_ext"][0].as_py() == "png"
    assert table["mask_sha256"][0].as_py() == hashlib.sha256(make_sample(0)[0]["mask.png"]).hexdigest()
    assert all(f.metadata and f.metadata[b"description"] for f in table.schema)


def test_identical_rows_give_identical_parquet_bytes(mem_url):
    rows = _rows([0, 1, 2], failed={2})
    a = write_manifest(join(mem_url, "a.parquet"), rows, TINY_DIMS, LAYOUT)
    b = write_manifest(join(mem_url, "b.parquet"), list(reversed(rows)), TINY_DIMS, LAYOUT)
    assert _cat(join(mem_url, "a.parquet")) == _cat(join(mem_url, "b.parquet"))
    assert a == b and a.sha256 == hashlib.sha256(_cat(join(mem_url, "a.parquet"))).hexdigest()


def test_manifest_rejects_wrong_vector_width_and_ok_rows_without_vectors(mem_url):
    rows = _rows([0], failed=set())
    rows[0]["farl"] = np.zeros(9, np.float32)
    with pytest.raises(ValueError, match=r"'farl' has shape \(9,\), expected \(8,\)"):
        write_manifest(join(mem_url, "m.parquet"), rows, TINY_DIMS, LAYOUT)
    del rows[0]["farl"]
    with pytest.raises(ValueError, match=r"status 'ok' but no vector\(s\) \['farl'\]"):
        write_manifest(join(mem_url, "m.parquet"), rows, TINY_DIMS, LAYOUT)
    assert not url_to_fs(mem_url)[0].exists(url_to_fs(join(mem_url, "m.parquet"))[1])


def test_encode_npy_round_trips():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(np.load(io.BytesIO(encode_npy(array)), allow_pickle=False), array)
