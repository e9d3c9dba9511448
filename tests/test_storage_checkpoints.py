"""storage.checkpoints: atomic save, weights_only load, latest checkpoint lookup."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from fsspec.core import url_to_fs

from mm2latent_core.errors import CheckpointError
from storage.atomic import temp_name
from storage.checkpoints import checkpoint_name, latest_checkpoint, load_checkpoint, save_checkpoint
from storage.fs import join


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-3


def _state() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    return {"model": model.state_dict(), "step": 12, "config": dataclasses.asdict(_Cfg()),
            "history": [0.5, 0.25], "dtype": torch.float32}


@pytest.mark.parametrize("where", ["local", "memory"])
def test_round_trip(where, tmp_path, mem_url):
    url = join(str(tmp_path) if where == "local" else mem_url, "run", checkpoint_name(12))
    state = _state()
    save_checkpoint(url, state)
    loaded = load_checkpoint(url)
    assert torch.equal(loaded["model"]["weight"], state["model"]["weight"])
    assert loaded["config"] == {"lr": 1e-3} and loaded["step"] == 12 and loaded["dtype"] is torch.float32


def test_non_plain_values_are_rejected_before_writing(mem_url):
    url = join(mem_url, checkpoint_name(1))
    with pytest.raises(TypeError, match=r"\['metrics'\]\['fid'\] has type numpy.float64"):
        save_checkpoint(url, {"metrics": {"fid": np.float64(3.0)}})
    with pytest.raises(TypeError, match=r"\['config'\] has type .*_Cfg.*dataclasses.asdict"):
        save_checkpoint(url, {"config": _Cfg()})
    fs, root = url_to_fs(mem_url)
    assert not fs.exists(root) or fs.ls(root) == []


def test_truncated_checkpoint_raises_checkpoint_error(mem_url):
    url = join(mem_url, checkpoint_name(5))
    save_checkpoint(url, _state())
    fs, path = url_to_fs(url)
    fs.pipe_file(path, fs.cat_file(path)[:200])
    with pytest.raises(CheckpointError, match=f"{url}: not a readable torch checkpoint"):
        load_checkpoint(url)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(join(mem_url, "missing.pt"))


def test_pickled_objects_are_refused_by_weights_only_loading(mem_url):
    url = join(mem_url, "foreign.pt")
    buffer = io.BytesIO()
    torch.save({"config": _Cfg()}, buffer)  # not written by save_checkpoint
    fs, path = url_to_fs(url)
    fs.pipe_file(path, buffer.getvalue())
    with pytest.raises(CheckpointError, match="foreign.pt: refers to tests.test_storage_checkpoints._Cfg") as info:
        load_checkpoint(url)
    # the refused class is named, the file called possibly unsafe, and nothing suggests
    # weights_only=False or that the file is merely truncated
    assert "may be unsafe" in str(info.value)
    assert "weights_only" not in str(info.value) and "truncated" not in str(info.value)


def test_latest_checkpoint_picks_highest_step(mem_url):
    assert latest_checkpoint(mem_url) is None
    for step in (900, 10_000, 2_000):
        save_checkpoint(join(mem_url, checkpoint_name(step)), {"step": step})
    fs, root = url_to_fs(mem_url)
    fs.pipe_file(join(root, temp_name(checkpoint_name(99_999))), b"interrupted")
    fs.pipe_file(join(root, "ckpt-final.pt"), b"other")
    latest = latest_checkpoint(mem_url)
    assert latest == join(mem_url, "ckpt-000010000.pt")
    assert load_checkpoint(latest)["step"] == 10_000
