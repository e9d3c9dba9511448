"""Reading PyTorch Lightning `.ckpt` files (the authors' released models) without running code.

A Lightning checkpoint is a torch pickle holding the module's `state_dict` plus trainer state
that references Lightning's own classes: `hyper_parameters` as an `AttributeDict`, and before
Lightning 1.5 a `callbacks` dict keyed by the callback CLASS itself (e.g. `ModelCheckpoint`).
Lightning is not a dependency of this project, and unpickling its real classes would run its
code anyway, so the file is read with torch's `weights_only` loader and each of those names is
admitted as an inert stand-in (a plain dict, or an empty marker class), for this call
only. Anything else the file references is refused by torch, and the refusal names it.

What is kept: the state dict, and small metadata (epoch, global step, Lightning version,
hyper-parameters as a plain dict, callback names) for reporting. Optimiser state is ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mm2latent.checkpoint_io import describe_container, read_torch_checkpoint
from mm2latent_core.errors import CheckpointError

# Lightning 1.x / 2.x spell the hyper-parameter container in these modules.
_ATTRIBUTE_DICTS = (
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "lightning.fabric.utilities.data.AttributeDict",
)
# Callback classes that appear as dict KEYS in Lightning < 1.5 checkpoints.
_CALLBACK_CLASSES = (
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
    "pytorch_lightning.callbacks.progress.ProgressBar",
    "pytorch_lightning.callbacks.progress.tqdm_progress.TQDMProgressBar",
    "pytorch_lightning.callbacks.model_summary.ModelSummary",
)


def _callback_stand_in(qualified: str) -> type:
    """An empty marker class named after a Lightning callback, usable as a dict key."""
    return type(qualified.rsplit(".", 1)[1], (), {"lightning_name": qualified})


def _numpy_scalar_globals() -> list[tuple[Any, str]]:
    """numpy scalars (e.g. a monitored score saved as np.float64) under old and new module names."""
    scalar = np.core.multiarray.scalar if hasattr(np, "core") else np._core.multiarray.scalar
    entries: list[tuple[Any, str]] = []
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        entries.append((scalar, f"{module}.scalar"))
    entries.append((np.dtype, "numpy.dtype"))
    for dtype in (np.float64, np.float32, np.int64, np.int32):
        cls = type(np.dtype(dtype))
        entries.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return entries


def lightning_safe_globals() -> list[tuple[Any, str]]:
    """(stand-in, qualified name) pairs admitted while reading a Lightning checkpoint."""
    # AttributeDict is a dict subclass; torch fills only plain dicts, so it becomes one.
    pairs: list[tuple[Any, str]] = [(dict, n) for n in _ATTRIBUTE_DICTS]
    pairs += [(_callback_stand_in(n), n) for n in _CALLBACK_CLASSES]
    return pairs + _numpy_scalar_globals()


@dataclass(frozen=True)
class LightningCheckpoint:
    """The parts of a Lightning `.ckpt` this project uses."""

    state_dict: dict[str, torch.Tensor]  # the LightningModule's parameters and buffers
    epoch: int | None = None  # epoch the file was saved at; None = not recorded
    global_step: int | None = None  # optimiser steps at save time; None = not recorded
    lightning_version: str | None = None  # 'pytorch-lightning_version'; None = not recorded
    hyper_parameters: dict[str, Any] = field(default_factory=dict)  # save_hyperparameters()
    callbacks: tuple[str, ...] = ()  # callback names whose state the file carries


def _callback_names(callbacks: object) -> tuple[str, ...]:
    if not isinstance(callbacks, dict):
        return ()
    return tuple(sorted(getattr(k, "lightning_name", str(k)) for k in callbacks))


def read_lightning_checkpoint(path: str | os.PathLike[str]) -> LightningCheckpoint:
    """Read a Lightning `.ckpt` with torch's weights_only loader and Lightning stand-ins.

    Args:
        path: local path or fsspec URL of the checkpoint.
    """
    ckpt = read_torch_checkpoint(path, safe_globals=lightning_safe_globals())
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(
            path, f"expected a Lightning checkpoint with a 'state_dict' dict, found "
                  f"{describe_container(ckpt)}.",
            "Pass the .ckpt file the authors released (not a plain state dict or a .pt).")
    state = ckpt["state_dict"]
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"state_dict entries {bad[:5]} are not tensors.")
    return LightningCheckpoint(
        state_dict=dict(state),
        epoch=ckpt.get("epoch"),
        global_step=ckpt.get("global_step"),
        lightning_version=ckpt.get("pytorch-lightning_version"),
        hyper_parameters=dict(ckpt.get("hyper_parameters") or {}),
        callbacks=_callback_names(ckpt.get("callbacks")),
    )
