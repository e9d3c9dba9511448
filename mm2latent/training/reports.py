"""Typed results of training: what `fit`, the trainers and the whole runs hand to their callers.

Read by attribute everywhere (flows, tasks, CLI, tests). A run's `summary.json` is the one
report written to disk; `TrainReport.to_json` / `from_json` keep the keys it has always had
(history rows flat, "metrics" = the best epoch's row), so summaries written before these types
existed still read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from mm2latent.training.registry import ModelRecord

_ROW_FIELDS = ("epoch", "step", "lr", "checkpoint")  # the non-loss entries of a history row


@dataclass(frozen=True)
class EpochMetrics:
    """One finished epoch: a row of a run's loss history."""

    epoch: int  # 0-based epoch this row closes
    step: int  # optimizer steps taken by the end of the epoch
    lr: float  # learning rate the epoch trained with
    losses: Mapping[str, float]  # "train_loss", "val_loss" and loss parts, e.g. "train_cosine"
    checkpoint: str | None = None  # checkpoint file name in the run directory; None = not kept

    @property
    def train_loss(self) -> float:
        """Mean training loss of the epoch."""
        return self.losses["train_loss"]

    @property
    def val_loss(self) -> float | None:
        """Mean validation loss; None without a validation split."""
        return self.losses.get("val_loss")

    @property
    def monitored(self) -> float:
        """The loss early stopping and the best epoch go by: validation if there is one."""
        return self.train_loss if self.val_loss is None else self.val_loss

    def to_dict(self) -> dict:
        """The flat row of summary.json and of checkpoints: epoch, step, lr, losses, checkpoint."""
        row = {"epoch": self.epoch, "step": self.step, "lr": self.lr, **self.losses}
        if self.checkpoint is not None:
            row["checkpoint"] = self.checkpoint
        return row

    @classmethod
    def from_dict(cls, row: Mapping) -> EpochMetrics:
        """Inverse of to_dict: every entry besides epoch, step, lr and checkpoint is a loss."""
        return cls(epoch=int(row["epoch"]), step=int(row["step"]), lr=float(row["lr"]),
                   losses={k: float(v) for k, v in row.items() if k not in _ROW_FIELDS},
                   checkpoint=row.get("checkpoint"))


@dataclass(frozen=True)
class TrainReport:
    """What `fit` returns: where the run is, its best epoch and its whole history."""

    run_url: str  # directory of the run's checkpoints
    checkpoint_url: str  # the best epoch's checkpoint (what gets registered)
    last_checkpoint_url: str  # the newest checkpoint (what a resume loads)
    best_epoch: int  # epoch with the lowest monitored loss
    epochs_done: int  # epochs trained so far, over every call
    stopped_early: bool  # early stopping ended the run
    finished: bool  # stopped early or reached cfg.epochs; False = resume to go on
    history: tuple[EpochMetrics, ...]  # one row per epoch, oldest first
    dataset_hash: str  # hash of the training data the run is bound to
    num_samples: int | None = None  # samples trained and validated on; None = fit alone, unknown

    @property
    def metrics(self) -> EpochMetrics:
        """The best epoch's row."""
        return next(r for r in self.history if r.epoch == self.best_epoch)

    def metrics_dict(self) -> dict:
        """The best row without its checkpoint name, as registry records and summary.json hold it."""
        return {k: v for k, v in self.metrics.to_dict().items() if k != "checkpoint"}

    def to_dict(self) -> dict:
        """JSON-able form with summary.json's keys (None-valued optional keys left out)."""
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc["history"] = [r.to_dict() for r in self.history]
        doc["metrics"] = self.metrics_dict()
        return {k: v for k, v in doc.items() if v is not None or k in _REQUIRED_KEYS}

    def to_json(self) -> str:
        """summary.json text: sorted keys, indented, newline-terminated."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, doc: Mapping) -> TrainReport:
        """Inverse of to_dict; "metrics" is derived from history, so it is not read back."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in names}
        values["history"] = tuple(EpochMetrics.from_dict(r) for r in doc["history"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> TrainReport:
        """A report from summary.json's text (written by this version or an earlier one)."""
        return cls.from_dict(json.loads(text))


_REQUIRED_KEYS = frozenset(f.name for f in dataclasses.fields(TrainReport)
                           if f.default is dataclasses.MISSING)


@dataclass(frozen=True)
class MappingTrainReport(TrainReport):
    """`train_mapping`'s report: fit's, plus the autoencoder embeddings it read."""

    embeddings_version: str | None = None  # embeddings directory read; None for flame

    def to_dict(self) -> dict:
        # The key is kept even when None (flame): mapping summaries always had it.
        return {**super().to_dict(), "embeddings_version": self.embeddings_version}


@dataclass(frozen=True)
class EmbeddingsReport:
    """What `write_embeddings` did for one embeddings directory."""

    url: str  # the embeddings version directory
    written: tuple[int, ...]  # shards encoded by this call
    skipped: tuple[int, ...]  # shards whose file was already current
    dim: int | None = None  # embedding width; None when nothing was encoded


@dataclass(frozen=True)
class AutoencoderReport:
    """One autoencoder run: its registry record, its training report and its embeddings."""

    record: ModelRecord
    summary: TrainReport
    embeddings: EmbeddingsReport


@dataclass(frozen=True)
class MappingReport:
    """One MappingNet run: its registry record and its training report."""

    record: ModelRecord
    summary: MappingTrainReport


@dataclass(frozen=True)
class RetrainPlan:
    """Whether registered models are behind a dataset's complete shards, and why."""

    needed: bool
    reason: str  # one sentence for logs and the Prefect artifact
    new_shards: tuple[int, ...] = ()  # shards some model has not seen
    dataset_hash: str | None = None  # the snapshot's hash; None when there is no complete shard


@dataclass(frozen=True)
class RetrainReport:
    """What a `retrain` flow run did."""

    retrained: bool
    reason: str
    records: tuple[ModelRecord, ...] = field(default_factory=tuple)  # new registry records
