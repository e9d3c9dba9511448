"""`train mapping --text captions`: the MappingNet's text input is the captions' FaRL text embedding."""

from __future__ import annotations

import numpy as np
import pytest

from mm2latent.attributes import run as attributes_run
from mm2latent.captions import run as captions_run
from mm2latent.captions.embeddings import build_text_tower, captions_version, read_text_embeddings
from mm2latent.fabricate.datasets import TINY_DIMS, write_dataset
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.training import mapping
from mm2latent.training.config import MappingTrainCfg
from mm2latent.training.pipeline import mapping_run
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
    monkeypatch.setattr(mapping, "mapping_job", lambda arrays, net, cfg, real_text=False: (
        seen.append((arrays["farl"].copy(), real_text)) or real_job(arrays, net, cfg, real_text)))
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
