"""`train mapping --text captions`: the MappingNet's text input is the captions' FaRL text embedding."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mm2latent.attributes import run as attributes_run
from mm2latent.captions import run as captions_run
from mm2latent.captions.embeddings import build_text_tower, captions_version, read_text_embeddings
from mm2latent.fabricate.datasets import TINY_DIMS, write_dataset
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.training import mapping
from mm2latent.training.config import MappingTrainCfg, TextInput
from mm2latent.training.pipeline import mapping_run, text_run_key
from mm2latent.training.registry import ModelRegistry
from mm2latent_core.errors import ConfigError, TrainingError

NET = MappingNetCfg(text_dim=512, spatial_dim=159, hidden_dim=32, depth=3, w_dim=16)
CFG = MappingTrainCfg(modality="flame", epochs=1, batch_size=4, val_fraction=0.0)


def _captioned(url: str) -> None:
    plan = attributes_run.plan(url, ("mask", "deca"))
    for shard in plan.todo:
        attributes_run.run_shard(plan, shard)
    captions = captions_run.plan(url)
    captions_run.run_shards(captions, captions.todo, build_text_tower(url))


def test_captions_feed_the_text_input_and_the_record_says_so(tmp_path, monkeypatch):
    url = str(tmp_path / "data")
    write_dataset(url, n_shards=2, per_shard=3, failed={4}, dims={**TINY_DIMS, "farl": 512})
    runs, registry = str(tmp_path / "runs"), str(tmp_path / "registry")
    with pytest.raises(TrainingError, match="no captions.*dataset captions"):
        mapping_run(url, runs, registry, NET, CFG, text="captions")
    _captioned(url)
    seen = []
    real_job = mapping.mapping_job
    monkeypatch.setattr(mapping, "mapping_job", lambda arrays, net, cfg, real_text=False, **kw: (
        seen.append((arrays["farl"].copy(), real_text)) or real_job(arrays, net, cfg, real_text, **kw)))
    captions = mapping_run(url, runs, registry, NET, CFG, text="captions")
    pteg = mapping_run(url, runs, registry, NET, CFG)
    _, text = read_text_embeddings(url, captions_version(url), (0, 1))
    np.testing.assert_array_equal(seen[0][0], text)  # the captions' embeddings, no image embedding
    assert seen[0][1] is True and seen[1][1] is False  # no PTEG noise on real text
    assert not np.allclose(seen[1][0], text)
    assert captions.record.extra["text"] == "captions"
    assert captions.record.extra["text_embeddings"] == captions_version(url)
    assert pteg.record.extra["text"] == "pteg" and pteg.record.extra["text_embeddings"] is None
    assert captions.summary.run_url != pteg.summary.run_url  # their own run directories
    with pytest.raises(ConfigError, match="--text 'words'; choose one of pteg, captions"):
        mapping_run(url, runs, registry, NET, CFG, text="words")


def _fabricated_arrays(n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return {"index": np.arange(100, 100 + n), "farl": unit(rng.normal(size=(n, 512))),
            "caption": unit(rng.normal(size=(n, 512))),
            "spatial": rng.normal(size=(n, 159)).astype(np.float32),
            "w": rng.normal(size=(n, 16)).astype(np.float32)}


def _text_inputs(arrays: dict, share: float, batch_size: int, epoch: int = 0) -> dict[int, np.ndarray]:
    """{sample index: the text vector the MappingNet was fed} over one training epoch."""
    job = mapping.mapping_job(arrays, NET, dataclasses.replace(CFG, batch_size=batch_size),
                              caption_share=share)
    fed = []
    job.model.register_forward_pre_hook(lambda _module, args: fed.append(args[0].detach().clone()))
    noise = torch.Generator().manual_seed(0)
    # Batches carry no index: a sample is known by its w row, which is unique here.
    index_of = {arrays["w"][r].tobytes(): int(i) for r, i in enumerate(arrays["index"])}
    seen = {}
    for batch in job.train_batches(epoch):
        job.loss_fn(batch, noise)
        for w, y in zip(batch["w"].numpy(), fed[-1].numpy()):
            seen[index_of[w.tobytes()]] = y
    return seen


def _reads_caption(arrays: dict, fed: dict[int, np.ndarray]) -> dict[int, bool]:
    row = {int(i): r for r, i in enumerate(arrays["index"])}
    return {i: bool(np.array_equal(y, arrays["caption"][row[i]])) for i, y in fed.items()}


def test_mixed_feeds_each_sample_its_caption_with_the_share_asked_whatever_the_batch_size():
    arrays = _fabricated_arrays()
    none = _reads_caption(arrays, _text_inputs(arrays, 0.0, 8))
    every = _reads_caption(arrays, _text_inputs(arrays, 1.0, 8))
    assert len(none) == len(every) == 40 and not any(none.values()) and all(every.values())
    half_at_4 = _reads_caption(arrays, _text_inputs(arrays, 0.5, 4))
    half_at_7 = _reads_caption(arrays, _text_inputs(arrays, 0.5, 7))
    assert half_at_4 == half_at_7  # drawn per sample index, not per batch position
    assert 10 <= sum(half_at_4.values()) <= 30  # a mix, not all or nothing
    assert half_at_4 != _reads_caption(arrays, _text_inputs(arrays, 0.5, 4, epoch=1))  # per epoch
    # The rows that do not read their caption get the PTEG embedding of the image, never f itself.
    fed = _text_inputs(arrays, 0.5, 4)
    row = {int(i): r for r, i in enumerate(arrays["index"])}
    for index, y in fed.items():
        if not half_at_4[index]:
            assert not np.allclose(y, arrays["farl"][row[index]])
            assert np.isclose(np.linalg.norm(y), 1.0, atol=1e-5)


def _weights(report) -> dict:
    return torch.load(report.record.checkpoint_url, weights_only=True)["model"]


def test_mixed_at_share_0_is_pteg_and_at_share_1_is_captions_exactly(tmp_path):
    url = str(tmp_path / "data")
    write_dataset(url, n_shards=2, per_shard=3, failed={4}, dims={**TINY_DIMS, "farl": 512})
    registry = str(tmp_path / "registry")
    with pytest.raises(TrainingError, match=f"no captions.*`mm2latent dataset captions {url}`"):
        mapping_run(url, str(tmp_path / "r"), registry, NET, CFG, text="mixed")
    _captioned(url)
    runs = {name: mapping_run(url, str(tmp_path / name), registry, NET, CFG, text=text, caption_share=share)
            for name, text, share in [("pteg", "pteg", None), ("captions", "captions", None),
                                      ("mixed0", "mixed", 0.0), ("mixed1", "mixed", 1.0),
                                      ("mixed", "mixed", None)]}
    for mixed, plain in [("mixed0", "pteg"), ("mixed1", "captions")]:
        a, b = _weights(runs[mixed]), _weights(runs[plain])
        assert all(torch.equal(a[k], b[k]) for k in a), (mixed, plain)
    half = _weights(runs["mixed"])
    assert not any(all(torch.equal(half[k], _weights(runs[p])[k]) for k in half)
                   for p in ("pteg", "captions"))
    record = runs["mixed"].record
    assert record.extra["text"] == "mixed" and record.extra["caption_share"] == 0.5
    assert record.extra["text_embeddings"] == captions_version(url)
    keys = [text_run_key(captions_version(url), TextInput(*text)) for text in
            [("mixed",), ("mixed", 0.5), ("mixed", 0.25), ("captions",)]]
    assert keys[0] == keys[1] and len(set(keys)) == 3  # None means 0.5; another share, another run
    with pytest.raises(ConfigError, match="--caption-share 0.3 only applies to --text mixed"):
        mapping_run(url, str(tmp_path / "r"), registry, NET, CFG, text="captions", caption_share=0.3)
    with pytest.raises(ConfigError, match=r"--caption-share must lie in \[0, 1\], got 1.5"):
        mapping_run(url, str(tmp_path / "r"), registry, NET, CFG, text="mixed", caption_share=1.5)


def test_train_mapping_text_mixed_cli_on_tiny(tmp_path, prefect_home):
    """As users run it: a subprocess; --caption-share without --text mixed is one line, exit 2."""
    url = str(tmp_path / "data")
    write_dataset(url, n_shards=2, per_shard=3, failed={4}, dims={**TINY_DIMS, "w": 512, "farl": 512})
    _captioned(url)
    env = dict(os.environ, PREFECT_API_URL="", PREFECT_HOME=str(prefect_home),
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="240")
    cli = [str(Path(sys.executable).with_name("mm2latent")), "train", "mapping", "--dataset", url,
           "--out", str(tmp_path / "runs"), "--modality", "flame", "--epochs", "1"]
    refused = subprocess.run([*cli, "--caption-share", "0.25"], env=env, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "--caption-share 0.25 only applies to --text mixed (got --text pteg)" in refused.stderr
    assert not (tmp_path / "runs").exists()
    done = subprocess.run([*cli, "--text", "mixed", "--caption-share", "0.25"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (record,) = ModelRegistry(str(tmp_path / "runs" / "registry")).records("mapping-flame")
    assert record.extra["text"] == "mixed" and record.extra["caption_share"] == 0.25
