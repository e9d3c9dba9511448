"""storage.fs and storage.atomic: URL resolution errors and temp-file-then-rename writes."""

from __future__ import annotations

import sys

import pytest
from fsspec.core import url_to_fs

from mm2latent_core.errors import DatasetError
from storage.atomic import AtomicFile, atomic_write_bytes, is_temp_name, remove_temp_files, temp_name
from storage.fs import check_writable, dirname, join, open_fs


def _fsspec_cache() -> dict:
    """fsspec's cache of imported filesystem classes (`fsspec.registry` the attribute is a proxy)."""
    return sys.modules["fsspec.registry"]._registry


def test_unknown_protocol_names_url_and_protocol():
    with pytest.raises(DatasetError, match=r"nosuch://bucket/data: unknown protocol 'nosuch'"):
        open_fs("nosuch://bucket/data")


def test_missing_s3fs_says_pip_install_s3fs(monkeypatch):
    # Make `import s3fs` fail and drop fsspec's cached class so the import is retried.
    monkeypatch.setitem(sys.modules, "s3fs", None)
    monkeypatch.delitem(_fsspec_cache(), "s3", raising=False)
    with pytest.raises(DatasetError, match=r"s3://bucket/ds: .*pip install s3fs"):
        check_writable("s3://bucket/ds")


def test_missing_gcsfs_says_pip_install_gcsfs(monkeypatch):
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    monkeypatch.delitem(_fsspec_cache(), "gcs", raising=False)
    with pytest.raises(DatasetError, match=r"pip install gcsfs"):
        open_fs("gcs://bucket/ds")


def test_check_writable_fails_fast_under_a_file(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    url = str(blocker / "out")
    with pytest.raises(DatasetError) as info:
        check_writable(url)
    assert url in str(info.value) and "Fix" in str(info.value)


def test_check_writable_creates_dir_and_leaves_nothing(mem_url):
    url = join(mem_url, "a", "b")
    check_writable(url)
    fs, root = open_fs(url)
    assert fs.isdir(root) and fs.ls(root) == []


def test_join_and_dirname_keep_protocol():
    assert join("memory://x/", "a", "b.tar") == "memory://x/a/b.tar"
    assert join("/data/ds", "shard-000000.tar") == "/data/ds/shard-000000.tar"
    assert dirname("s3://bucket/ds/f.tar") == "s3://bucket/ds"
    assert dirname("/f") == "/"


@pytest.mark.parametrize("where", ["local", "memory"])
def test_atomic_write_replaces_content_without_leftovers(where, tmp_path, mem_url):
    base = str(tmp_path) if where == "local" else mem_url
    url = join(base, "sub", "f.bin")
    atomic_write_bytes(url, b"first")
    atomic_write_bytes(url, b"second")
    fs, path = url_to_fs(url)
    assert fs.cat_file(path) == b"second"
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(dirname(path), detail=False)] == ["f.bin"]


@pytest.mark.parametrize("where", ["local", "memory"])
def test_atomic_file_is_invisible_until_commit_and_discarded_on_error(where, tmp_path, mem_url):
    base = str(tmp_path) if where == "local" else mem_url
    url = join(base, "f.bin")
    atomic_write_bytes(url, b"old")
    fs, path = url_to_fs(url)
    with pytest.raises(RuntimeError, match="crash"):
        with AtomicFile(url) as f:
            f.write(b"partial new content")
            names = [p.rsplit("/", 1)[-1] for p in fs.ls(dirname(path), detail=False)]
            # While writing: the old file plus one hidden temp file in the same directory.
            assert sorted(names)[1:] == ["f.bin"] and is_temp_name(sorted(names)[0])
            raise RuntimeError("crash")
    assert fs.cat_file(path) == b"old"
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(dirname(path), detail=False)] == ["f.bin"]


def test_remove_temp_files_removes_only_crash_leftovers(mem_url):
    fs, root = open_fs(mem_url)
    leftover = join(root, temp_name("shard-000000.tar"))
    fs.pipe_file(leftover, b"half a shard")
    fs.pipe_file(join(root, "shard-000000.parquet"), b"keep")
    fs.pipe_file(join(root, ".hidden-but-not-temp"), b"keep")
    removed = remove_temp_files(mem_url)
    assert removed == [leftover]
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    assert names == [".hidden-but-not-temp", "shard-000000.parquet"]
    assert remove_temp_files(join(mem_url, "missing")) == []
