"""`--resume` with changed settings is refused; old checkpoints are pruned and resume stays exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mm2latent.errors import TrainingError
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.training.config import MappingTrainCfg
from mm2latent.training.loop import fit
from mm2latent.training.mapping import mapping_job
from mm2latent.training.pipeline import mapping_run
from storage.checkpoints import load_checkpoint
from tests.fabricate_training import learnable_vectors, write_learnable_dataset

NET = MappingNetCfg(text_dim=16, spatial_dim=159, hidden_dim=48, depth=3, w_dim=16)


class Interrupted(Exception):
    """Stands in for Ctrl-C after an epoch."""


def _stop_after_first_epoch(_: int) -> None:
    raise Interrupted


def test_resume_with_changed_settings_is_refused_naming_the_fields(tmp_path):
    dataset, out = str(tmp_path / "data"), str(tmp_path / "runs")
    write_learnable_dataset(dataset, n_shards=1, per_shard=16)
    registry = str(tmp_path / "runs" / "registry")
    cfg = MappingTrainCfg(modality="flame", epochs=3, batch_size=8, lr=0.01, val_fraction=0.0)
    with pytest.raises(Interrupted):
        mapping_run(dataset, out, registry, NET, cfg, on_progress=_stop_after_first_epoch)
    changed = MappingTrainCfg(modality="flame", epochs=3, batch_size=4, lr=0.05, val_fraction=0.0)
    with pytest.raises(TrainingError, match=r"cannot resume.*batch_size: 8 -> 4, lr: 0.01 -> 0.05"):
        mapping_run(dataset, out, registry, NET, changed, resume=True)
    report = mapping_run(dataset, out, registry, NET, cfg, resume=True)  # same settings: resumes
    assert report.summary.epochs_done == 3 and len(report.summary.history) == 3
    fresh = mapping_run(dataset, out, registry, NET, changed)  # without --resume: a new run
    assert fresh.summary.run_url != report.summary.run_url


def _arrays(n: int = 48) -> dict[str, np.ndarray]:
    rows = [learnable_vectors(i) for i in range(n)]
    return {"index": np.arange(n), "farl": np.stack([r["farl"] for r in rows]),
            "spatial": np.stack([r["flame"] for r in rows]), "w": np.stack([r["w"] for r in rows])}


def _ckpts(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.startswith("ckpt-"))


@pytest.mark.parametrize("keep", [2, 1])
def test_only_the_last_k_and_the_best_checkpoints_stay_and_resume_is_exact(tmp_path, keep):
    # A constant lr far too high: the validation loss wanders, and its best epoch (3 of 0..5)
    # is neither among the last ones nor the first.
    cfg = MappingTrainCfg(modality="flame", epochs=6, batch_size=16, lr=1.0, schedule="none",
                          val_fraction=0.25, seed=5, keep_checkpoints=keep)
    full = fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path / "a"), "h")
    history = full.history
    assert full.best_epoch == 3
    expected = {r.checkpoint for r in history[-keep:]} | {
        r.checkpoint for r in history if r.epoch == full.best_epoch}
    assert _ckpts(tmp_path / "a") == sorted(expected)
    part = fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path / "b"), "h", stop_after_epoch=4)
    assert len(_ckpts(tmp_path / "b")) <= keep + 1 and not part.finished
    resumed = fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path / "b"), "h", resume=True)
    a, b = load_checkpoint(full.last_checkpoint_url), load_checkpoint(resumed.last_checkpoint_url)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert _ckpts(tmp_path / "b") == _ckpts(tmp_path / "a")
