"""Storage owns every open: torch files from any fsspec URL, exclusive creates and long-lived
temp files committed by the one atomic-write mechanism (storage.atomic)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch

from mm2latent import weights
from mm2latent.checkpoint_io import read_torch_checkpoint
from mm2latent.models.face_parser.facer_farl import load_facer_farl
from storage.atomic import AtomicFile, is_temp_name, publish
from storage.exclusive import ExclusiveCreateError, create_exclusive
from storage.fs import join, list_names, open_fs, read_file
from storage.torch_files import load_torch, load_torchscript
from tests.fabricate_parsers import write_facer_farl_script


def _copy_to(url: str, local_path: os.PathLike[str]) -> str:
    fs, path = open_fs(url)
    fs.pipe_file(path, Path(local_path).read_bytes())
    return url


def test_torchscript_loads_from_an_fsspec_url(tmp_path, mem_url):
    # Before, facer/CLIP TorchScript files were handed to torch.jit.load as a path: memory://
    # and s3:// URLs failed although every other checkpoint loader took them.
    url = _copy_to(join(mem_url, "farl.pt"), write_facer_farl_script(tmp_path / "farl.pt", seed=1))
    local = load_facer_farl(tmp_path / "farl.pt")
    remote = load_facer_farl(url)
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(local(x), remote(x))
    assert isinstance(load_torchscript(io.BytesIO(read_file(url))), torch.jit.ScriptModule)


@pytest.mark.parametrize("where", ["local", "memory"])
def test_torch_checkpoint_reads_by_path_or_url_with_per_call_globals(where, tmp_path, mem_url):
    import argparse

    state = {"w": torch.arange(6.0).reshape(2, 3), "opts": argparse.Namespace(size=1024)}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    url = join(str(tmp_path) if where == "local" else mem_url, "ckpt.pt")
    fs, path = open_fs(url)
    fs.pipe_file(path, buffer.getvalue())
    loaded = read_torch_checkpoint(url, safe_globals=[argparse.Namespace])
    assert torch.equal(loaded["w"], state["w"]) and loaded["opts"].size == 1024
    with pytest.raises(Exception, match="Namespace"):  # admitted for that call only
        load_torch(url)


def test_exclusive_create_commits_once_and_leaves_no_temp_files(tmp_path):
    url = join(str(tmp_path), "sub", "v000001.json")
    assert create_exclusive(url, b"first")
    assert not create_exclusive(url, b"second")
    assert read_file(url) == b"first"
    assert list_names(join(str(tmp_path), "sub")) == ["v000001.json"]


def test_exclusive_create_refuses_a_filesystem_that_cannot_create_only_if_free():
    # HTTP has no create-only write: refused before any request, not a check-then-write race.
    with pytest.raises(ExclusiveCreateError, match=r"http:// cannot create a file only if its name is free"):
        create_exclusive("http://127.0.0.1:9/registry/v000001.json", b"{}")


def test_commit_new_refuses_remote_filesystems(mem_url):
    writer = AtomicFile(join(mem_url, "x.json"))
    writer.open().write(b"{}")
    with pytest.raises(ValueError, match="local"):
        writer.commit_new()
    writer.discard()
    assert list_names(mem_url) == []


@pytest.mark.parametrize("where", ["local", "memory"])
def test_publish_moves_a_finished_temp_file_over_the_final_name(where, tmp_path, mem_url):
    base = str(tmp_path) if where == "local" else mem_url
    final, part = join(base, "w.bin"), join(base, "w.bin.part")
    for url, data in ((final, b"old"), (part, b"new")):
        fs, path = open_fs(url)
        fs.pipe_file(path, data)
    publish(part, final)
    assert read_file(final) == b"new" and list_names(base) == ["w.bin"]


def test_recorded_digests_keep_the_old_json_bytes(tmp_path):
    # A recorded_sha256.json as the dict-based code wrote it (json.dump, indent 2, sorted).
    old = {"format": 1,
           "entries": {"farl.ep16": {"filename": weights.get_spec("farl.ep16").filename,
                                     "url": "https://example.org/f.pth", "sha256": "ab" * 32,
                                     "size": 12, "recorded_at": "2026-01-01T00:00:00Z"}},
           "stamps": {"f.pth": {"size": 12, "mtime_ns": 1, "ctime_ns": 2, "sha256": "ab" * 32},
                      "ffhq.pkl": {"size": 3, "mtime_ns": 4, "ctime_ns": 5, "sha256": "cd" * 32}}}
    text = json.dumps(old, indent=2, sort_keys=True)
    (tmp_path / weights.RECORDED_FILE).write_text(text)
    recorded = weights.load_recorded(tmp_path)
    assert recorded.entries["farl.ep16"].sha256 == "ab" * 32
    assert recorded.entry_for(weights.get_spec("farl.ep16")).size == 12
    assert recorded.stamps["ffhq.pkl"].ctime_ns == 5
    weights.forget_recorded("stylegan2.ffhq1024-nvidia", tmp_path)  # drops the ffhq.pkl stamp
    del old["stamps"]["ffhq.pkl"]
    assert (tmp_path / weights.RECORDED_FILE).read_text() == json.dumps(old, indent=2, sort_keys=True)
    assert not [p for p in os.listdir(tmp_path) if is_temp_name(p)]


def test_recorded_digest_with_a_missing_field_names_the_file_and_fix(tmp_path):
    bad = {"format": 1, "entries": {"farl.ep16": {"filename": "f.pth"}}, "stamps": {}}
    (tmp_path / weights.RECORDED_FILE).write_text(json.dumps(bad))
    with pytest.raises(weights.WeightsIntegrityError, match="recorded_sha256.json.*weights verify"):
        weights.load_recorded(tmp_path)
