"""The generic loop: learning, exact resume, NaN handling, early stopping, schedule."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mm2latent.errors import TrainingError
from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.training.config import MappingTrainCfg
from mm2latent.training.loop import evaluate, fit, load_trained_model
from mm2latent.training.mapping import _mapping_from_extra, mapping_job
from storage.checkpoints import load_checkpoint
from tests.fabricate_training import learnable_vectors

NET = MappingNetCfg(text_dim=16, spatial_dim=159, hidden_dim=48, depth=3, w_dim=16)


def _arrays(n: int = 64) -> dict[str, np.ndarray]:
    rows = [learnable_vectors(i) for i in range(n)]
    return {"index": np.arange(n), "farl": np.stack([r["farl"] for r in rows]),
            "spatial": np.stack([r["flame"] for r in rows]), "w": np.stack([r["w"] for r in rows])}


def _cfg(**kw) -> MappingTrainCfg:
    base = dict(modality="flame", epochs=4, batch_size=16, lr=3e-3, val_fraction=0.25, seed=5)
    return MappingTrainCfg(**(base | kw))


def _files(run_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def test_mapping_loss_falls_by_a_clear_margin_on_learnable_vectors(tmp_path):
    # PTEG on (the paper's setup): the input is a noisy copy of farl, so the floor is well above 0.
    cfg = _cfg(epochs=8, lr=3e-2)
    job = mapping_job(_arrays(128), dataclasses.replace(NET, dropout=0.0), cfg)
    untrained = evaluate(job, cfg.seed)["val_loss"]
    summary = fit(job, cfg, str(tmp_path), "h")
    val = [row.val_loss for row in summary.history]
    assert val[-1] < 0.6 * untrained, (untrained, val)
    assert summary.metrics.val_loss == min(val)
    assert (tmp_path / summary.history[-1].checkpoint).exists()


def test_resume_gives_the_same_weights_and_optimizer_as_an_uninterrupted_run(tmp_path):
    cfg = _cfg()  # PTEG and dropout on: both RNG streams must be restored
    full = fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path / "a"), "h")
    part = fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path / "b"), "h", stop_after_epoch=2)
    assert part.epochs_done == 2 and not part.finished
    resumed = fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path / "b"), "h", resume=True)
    a, b = load_checkpoint(full.last_checkpoint_url), load_checkpoint(resumed.last_checkpoint_url)
    assert a["step"] == b["step"] == resumed.history[-1].step
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][pid]["exp_avg"])
    assert [r.val_loss for r in full.history] == [r.val_loss for r in resumed.history]


def test_nan_loss_raises_and_leaves_earlier_checkpoints_untouched(tmp_path):
    cfg = _cfg()
    fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path), "h", stop_after_epoch=1)
    before = _files(tmp_path)
    job = mapping_job(_arrays(), NET, cfg)
    real_loss = job.loss_fn
    job.loss_fn = lambda batch, noise: (real_loss(batch, noise)[0] * float("nan"), {})
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 1.*untouched"):
        fit(job, cfg, str(tmp_path), "h", resume=True)
    assert _files(tmp_path) == before


def test_resume_refuses_a_changed_config_or_dataset_and_existing_runs_need_resume(tmp_path):
    cfg = _cfg()
    fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path), "h", stop_after_epoch=1)
    with pytest.raises(TrainingError, match="--resume"):
        fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path), "h")
    changed = _cfg(lr=1e-4)
    with pytest.raises(TrainingError, match=r"config differs \(lr: 0.003 -> 0.0001\)"):
        fit(mapping_job(_arrays(), NET, changed), changed, str(tmp_path), "h", resume=True)
    with pytest.raises(TrainingError, match="dataset now hashes"):
        fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path), "other", resume=True)


def test_early_stopping_stops_after_patience_and_reports_the_best_epoch(tmp_path):
    cfg = _cfg(epochs=10, lr=1e-9, patience=2, min_delta=1.0)  # nothing can improve by 1.0
    summary = fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path), "h")
    assert summary.stopped_early and summary.epochs_done == 3
    assert summary.best_epoch == 0
    assert summary.checkpoint_url.endswith(summary.history[0].checkpoint)


def test_cosine_schedule_and_caller_rng_are_respected(tmp_path):
    cfg = _cfg(epochs=4, lr=1e-3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    summary = fit(mapping_job(_arrays(), NET, cfg), cfg, str(tmp_path), "h")
    assert torch.equal(torch.get_rng_state(), state)
    lrs = [row.lr for row in summary.history]
    expected = [1e-3 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]
    assert lrs == pytest.approx(expected)
    model, ckpt = load_trained_model(summary.last_checkpoint_url, _mapping_from_extra)
    assert not model.training and ckpt["extra_config"]["mapping_net"]["depth"] == 3


def test_an_epoch_without_a_training_batch_is_a_clear_error(tmp_path):
    # BatchNorm drops one-row batches: a single training sample leaves none to train on.
    cfg = _cfg(batch_size=16, val_fraction=0.0)
    job = mapping_job(_arrays(1), NET, cfg)
    with pytest.raises(TrainingError, match="no training batch"):
        fit(job, cfg, str(tmp_path), "h")
