"""Generic seeded train/validation loop with lr schedule, early stopping and exact resume.

One checkpoint per finished epoch, each under a new name (`ckpt-<step>.pt`), written
atomically, so an interrupted or failed run never touches an earlier file. Once a checkpoint
is written, older ones are deleted except the last `cfg.keep_checkpoints` and the best epoch's. A checkpoint holds
everything the next epoch depends on: model, optimizer, scheduler, epoch, step, both RNG
states, config, dataset hash, history and the early-stopping counters. Shuffling is seeded per
epoch (seed, epoch), so resuming at an epoch boundary replays exactly what an uninterrupted
run does on CPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from mm2latent.errors import TrainingError
from mm2latent.seeding import derive_seed
from mm2latent.training.config import TrainCfg
from mm2latent.training.reports import EpochMetrics, TrainReport
from storage.checkpoints import (checkpoint_name, latest_checkpoint, load_checkpoint,
                                 prune_checkpoints, save_checkpoint)
from storage.fs import join

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "mm2latent.train/1"
Batch = dict[str, torch.Tensor]
# loss_fn(batch, noise generator) -> (scalar loss, {part name: scalar tensor}).
LossFn = Callable[[Batch, torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]
ProgressFn = Callable[[int], None]  # called with the number of epochs just finished (1)


@dataclass
class TrainJob:
    """What `fit` trains: a model, its loss, and batch sources (built by a trainer module)."""

    model: nn.Module
    loss_fn: LossFn
    train_batches: Callable[[int], Iterable[Batch]]  # epoch -> shuffled training batches
    val_batches: Callable[[], Iterable[Batch]] | None  # None = no validation split
    extra_config: dict  # JSON-able description stored in every checkpoint (e.g. architecture)


def make_optimizer(model: nn.Module, cfg: TrainCfg) -> torch.optim.Optimizer:
    """Adam with the config's lr and weight decay (the authors train every network with Adam)."""
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainCfg) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch lr schedule: cosine to 0 over cfg.epochs, step decay, or constant."""
    sched = torch.optim.lr_scheduler
    if cfg.schedule == "cosine":
        return sched.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return sched.StepLR(opt, step_size=cfg.step_epochs, gamma=cfg.step_gamma)
    return sched.ConstantLR(opt, factor=1.0, total_iters=0)


class _State:
    """Mutable loop state; `to_checkpoint` / `load` convert it from / to a checkpoint dict."""

    def __init__(self, job: TrainJob, cfg: TrainCfg, dataset_hash: str) -> None:
        self.job, self.cfg, self.dataset_hash = job, cfg, dataset_hash
        self.optimizer = make_optimizer(job.model, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.noise = torch.Generator().manual_seed(derive_seed(cfg.seed, "noise"))
        self.epoch, self.step, self.bad_epochs = 0, 0, 0
        self.best_epoch, self.best_loss = -1, math.inf
        self.history: list[EpochMetrics] = []
        self.stopped_early = False

    def to_checkpoint(self) -> dict:
        # A dict, not a dataclass: torch.save writes it and `weights_only=True` loading admits
        # only plain containers, tensors and scalars, so the checkpoint format stays as it was.
        return {
            "format": CHECKPOINT_FORMAT, "model": self.job.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "step": self.step,
            "rng": {"torch": torch.get_rng_state(), "noise": self.noise.get_state()},
            "config": self.cfg.to_dict(), "extra_config": self.job.extra_config,
            "dataset_hash": self.dataset_hash,
            "history": [row.to_dict() for row in self.history],
            "best": {"epoch": self.best_epoch, "loss": self.best_loss, "bad_epochs": self.bad_epochs},
            "stopped_early": self.stopped_early,
        }

    def load(self, url: str, ckpt: dict) -> None:
        _check_resumable(url, ckpt, self)
        self.job.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.noise.set_state(ckpt["rng"]["noise"])
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.history = [EpochMetrics.from_dict(row) for row in ckpt["history"]]
        best = ckpt["best"]
        self.best_epoch, self.best_loss, self.bad_epochs = best["epoch"], best["loss"], best["bad_epochs"]
        self.stopped_early = ckpt["stopped_early"]


def _check_resumable(url: str, ckpt: dict, state: _State) -> None:
    """TrainingError unless the checkpoint was written by this config on this dataset."""
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{url}: not a training checkpoint (format {ckpt.get('format')!r}).")
    fix = "Fix: resume with the original settings, or train into a new --out directory."
    if ckpt["dataset_hash"] != state.dataset_hash:
        raise TrainingError(f"{url}: written for dataset hash {ckpt['dataset_hash'][:12]}, but the "
                            f"dataset now hashes to {state.dataset_hash[:12]} (shards changed). {fix}")
    for name, ours in (("config", state.cfg.to_dict()), ("extra_config", state.job.extra_config)):
        theirs = ckpt[name]
        diffs = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if diffs:
            detail = ", ".join(f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}" for k in diffs)
            raise TrainingError(f"{url}: cannot resume, {name} differs ({detail}). {fix}")


def _add_losses(sums: dict[str, float], batch: Batch, loss: torch.Tensor,
                parts: dict[str, torch.Tensor]) -> int:
    """Add a batch's loss and parts, weighted by its size, to `sums`; return the size."""
    n = len(next(iter(batch.values())))
    for name, value in {"loss": loss, **parts}.items():
        sums[name] = sums.get(name, 0.0) + float(value.detach()) * n
    return n


# Loss means are keyed by loss name ("train_loss", "val_cosine", ...): the parts come from each
# trainer's loss_fn, so they are a mapping, which EpochMetrics.losses holds as it is.
def _run_epoch(state: _State) -> dict[str, float]:
    """One pass over the training batches; mean loss and parts weighted by batch size."""
    job, sums, count = state.job, {}, 0
    job.model.train()
    for batch in job.train_batches(state.epoch):
        loss, parts = job.loss_fn(batch, state.noise)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss is {loss.item()} at epoch {state.epoch}, step {state.step}; training "
                "stopped and earlier checkpoints are untouched. Fix: lower the learning rate, or "
                "check the data for non-finite values.")
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        state.step += 1
        count += _add_losses(sums, batch, loss, parts)
    if count == 0:
        raise TrainingError(
            f"epoch {state.epoch} had no training batch (too few training samples for the batch "
            "size, or a one-sample batch dropped for BatchNorm). Fix: lower batch_size or "
            "val_fraction, or generate more samples.")
    return {f"train_{k}": v / count for k, v in sums.items()}


@torch.no_grad()
def evaluate(job: TrainJob, seed: int) -> dict[str, float]:
    """Mean validation loss and parts by name, e.g. {"val_loss": ...} (eval mode, fixed noise
    seed so epochs are comparable); empty without a validation split."""
    if job.val_batches is None:
        return {}
    was_training = job.model.training
    job.model.eval()
    noise = torch.Generator().manual_seed(derive_seed(seed, "val-noise"))
    sums, count = {}, 0
    try:
        for batch in job.val_batches():
            loss, parts = job.loss_fn(batch, noise)
            count += _add_losses(sums, batch, loss, parts)
    finally:
        job.model.train(was_training)
    if count and not math.isfinite(sums["loss"]):
        raise TrainingError(f"validation loss is {sums['loss']}; earlier checkpoints are untouched.")
    return {f"val_{k}": v / count for k, v in sums.items()} if count else {}


def _end_epoch(state: _State, losses: dict[str, float], run_url: str) -> None:
    """Record the epoch's row, update early stopping, step the schedule, write the checkpoint."""
    cfg = state.cfg
    row = EpochMetrics(epoch=state.epoch, step=state.step, lr=state.optimizer.param_groups[0]["lr"],
                       losses=losses, checkpoint=checkpoint_name(state.step))
    state.history.append(row)
    if row.monitored < state.best_loss - cfg.min_delta:
        state.best_loss, state.best_epoch, state.bad_epochs = row.monitored, state.epoch, 0
    else:
        state.bad_epochs += 1
    state.scheduler.step()
    state.epoch += 1
    state.stopped_early = cfg.patience > 0 and state.bad_epochs >= cfg.patience
    save_checkpoint(join(run_url, row.checkpoint), state.to_checkpoint())
    # Pruned only after the new file is in place: a crash here leaves one file too many, never
    # one too few. The newest is what a resume loads; the best is what gets registered.
    keep = {r.checkpoint for r in state.history[-cfg.keep_checkpoints:]}
    keep |= {r.checkpoint for r in state.history if r.epoch == state.best_epoch}
    prune_checkpoints(run_url, keep)
    logger.info("epoch %d/%d: %s", state.epoch, cfg.epochs, {k: round(v, 5) for k, v in losses.items()})


def fit(job: TrainJob, cfg: TrainCfg, run_url: str, dataset_hash: str, resume: bool = False,
        on_progress: ProgressFn | None = None, stop_after_epoch: int | None = None) -> TrainReport:
    """Train `job.model` for cfg.epochs (or until early stopping); return the run's report.

    Args:
        job: model, loss and batch sources.
        cfg: loop settings (epochs, lr, schedule, patience, seed...).
        run_url: directory of this run's checkpoints (`ckpt-<step>.pt`).
        dataset_hash: mm2latent.training.data.dataset_hash of the training data.
        resume: continue from the latest checkpoint in run_url; without it, a run_url that
            already holds checkpoints is an error (they are never overwritten).
        on_progress: called with 1 after each finished epoch.
        stop_after_epoch: end this call once this many epochs are done (a time-boxed job; resume
            later); None = train to the end.

    Returns:
        TrainReport: best and last checkpoint, best epoch, epochs done, whether it finished,
        and the history (num_samples is left for the trainer to fill in).
    """
    # Leave the caller's global RNG as it was; dropout draws from a seeded/restored copy.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "dropout"))
        job.model.to(cfg.device)  # before the optimizer loads its state, which follows the params
        state = _State(job, cfg, dataset_hash)
        latest = latest_checkpoint(run_url)
        if latest is not None and not resume:
            raise TrainingError(f"{run_url} already holds checkpoints (latest {latest}). Fix: pass "
                                "--resume to continue that run, or choose another --out.")
        if latest is not None:
            state.load(latest, load_checkpoint(latest))
            logger.info("resumed %s at epoch %d, step %d", latest, state.epoch, state.step)
        limit = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)
        while state.epoch < limit and not state.stopped_early:
            losses = _run_epoch(state)
            losses.update(evaluate(job, cfg.seed))
            _end_epoch(state, losses, run_url)
            if on_progress is not None:
                on_progress(1)
    return _summary(state, run_url)


def _summary(state: _State, run_url: str) -> TrainReport:
    """The report `fit` returns."""
    if not state.history:
        raise TrainingError(f"{run_url}: no epoch was trained (epochs={state.cfg.epochs}).")
    best = next(r for r in state.history if r.epoch == state.best_epoch)
    return TrainReport(
        run_url=run_url, checkpoint_url=join(run_url, best.checkpoint),
        last_checkpoint_url=join(run_url, state.history[-1].checkpoint),
        best_epoch=state.best_epoch, epochs_done=state.epoch, stopped_early=state.stopped_early,
        finished=state.stopped_early or state.epoch >= state.cfg.epochs,
        history=tuple(state.history), dataset_hash=state.dataset_hash)


def load_trained_model(url: str, build: Callable[[dict], nn.Module]) -> tuple[nn.Module, dict]:
    """(model in eval mode, checkpoint dict) from a training checkpoint.

    Args:
        url: a `ckpt-*.pt` written by `fit`.
        build: makes the untrained model from the checkpoint's extra_config.
    """
    ckpt = load_checkpoint(url)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{url}: not a training checkpoint (format {ckpt.get('format')!r}).")
    try:
        model = build(ckpt["extra_config"])
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError) as e:
        raise TrainingError(f"{url}: checkpoint lacks the expected architecture entry ({e}).") from e
    except RuntimeError as e:
        raise TrainingError(f"{url}: weights do not fit the model ({str(e).splitlines()[0]}).") from e
    return model.eval(), ckpt
