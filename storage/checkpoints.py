"""Training checkpoints: atomic torch.save through fsspec, weights_only loading.

A checkpoint is a dict of tensors and plain values (dicts, lists, tuples, str, int, float,
bool, None, bytes, torch.dtype, torch.Size), so that `torch.load(weights_only=True)` can read
it without unpickling arbitrary classes. Store configs with `dataclasses.asdict`.
Names: `ckpt-<step, 9 digits>.pt`, so `latest_checkpoint` finds the highest step.
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
import re
import zipfile

import torch

from mm2latent.errors import CheckpointError, refused_globals, refused_message, unpickler_detail
from storage.atomic import atomic_write_bytes, is_temp_name
from storage.digests import file_sha256
from storage.fs import join, open_fs
from storage.torch_files import load_torch

logger = logging.getLogger(__name__)

_CKPT_RE = re.compile(r"^ckpt-(\d{9})\.pt$")
# Exact types (not isinstance): numpy.float64 subclasses float but is not weights_only-safe.
_LEAF_TYPES = (str, int, float, bool, bytes, type(None), torch.dtype, torch.Size)
_CONTAINER_TYPES = (dict, collections.OrderedDict, list, tuple)


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint at training step `step`."""
    if not 0 <= step < 10**9:
        raise ValueError(f"step {step} is outside [0, 1e9)")
    return f"ckpt-{step:09d}.pt"


def _check_plain(value: object, path: str) -> None:
    """Raise TypeError naming the first entry that weights_only loading would reject."""
    if isinstance(value, torch.Tensor) or type(value) in _LEAF_TYPES:
        return
    if type(value) not in _CONTAINER_TYPES:
        raise TypeError(
            f"checkpoint entry {path or '<root>'} has type {type(value).__module__}."
            f"{type(value).__qualname__}, which torch.load(weights_only=True) cannot read; "
            "store tensors and plain values (use dataclasses.asdict for configs, .tolist() or "
            "torch.from_numpy for numpy values)."
        )
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for k, v in items:
        if isinstance(value, dict) and type(k) not in _LEAF_TYPES:
            raise TypeError(f"checkpoint entry {path or '<root>'} has a key of type {type(k).__name__}")
        _check_plain(v, f"{path}[{k!r}]")


def save_checkpoint(url: str, state: dict) -> None:
    """Serialise `state` with torch.save and write it atomically to `url`.

    Args:
        url: destination file, e.g. `runs/x/ckpt-000001000.pt` or `s3://bucket/x/...`.
        state: dict of tensors (state_dicts) and plain JSON-like values.

    Raises:
        TypeError: an entry could not be loaded back with weights_only=True.
    """
    if not isinstance(state, dict):
        raise TypeError(f"checkpoint state must be a dict, got {type(state).__name__}")
    _check_plain(state, "")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(url, buffer.getvalue())


def load_checkpoint(url: str, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by save_checkpoint with torch.load(weights_only=True).

    Args:
        url: checkpoint file URL.
        map_location: device for the tensors.

    Raises:
        CheckpointError: missing, truncated, or not a weights_only-loadable dict.
    """
    try:
        state = load_torch(url, map_location=map_location)  # local: by path, never copied
    except (FileNotFoundError, IsADirectoryError) as e:
        raise CheckpointError(url, "checkpoint not found.", "Check the path or --resume value.") from e
    except pickle.UnpicklingError as e:
        if refused_globals(e):
            raise CheckpointError(url, refused_message(refused_globals(e)),
                                  "Use a checkpoint written by save_checkpoint.") from e
        raise CheckpointError(url, f"not a readable torch checkpoint ({unpickler_detail(e)[:300]}).",
                              "The file is truncated; use an earlier checkpoint.") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            url,
            f"not a readable torch checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}).",
            "The file is truncated or was not written by save_checkpoint; use an earlier checkpoint.",
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(url, f"holds a {type(state).__name__}, expected a dict.")
    return state


def checkpoint_sha256(url: str) -> str:
    """sha256 of a checkpoint file's bytes (names data derived from the model it holds)."""
    try:
        return file_sha256(url)
    except FileNotFoundError as e:
        raise CheckpointError(url, "checkpoint not found.", "Check the path or --resume value.") from e


def prune_checkpoints(dir_url: str, keep: set[str]) -> list[str]:
    """Delete the `ckpt-*.pt` files under `dir_url` whose names are not in `keep`; their URLs."""
    fs, root = open_fs(dir_url)
    fs.invalidate_cache(root)
    removed = []
    for path in fs.ls(root, detail=False):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        if _CKPT_RE.match(name) and name not in keep:
            fs.rm(path)
            removed.append(join(dir_url, name))
    return removed


def latest_checkpoint(dir_url: str) -> str | None:
    """URL of the checkpoint with the highest step under `dir_url`, or None if there is none.

    Temp files of interrupted saves and other names are ignored.
    """
    fs, root = open_fs(dir_url)
    fs.invalidate_cache(root)  # other processes may have written since the last listing
    if not fs.exists(root):
        return None
    best: tuple[int, str] | None = None
    for path in fs.ls(root, detail=False):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        match = _CKPT_RE.match(name)
        if match is None or is_temp_name(name):
            continue
        step = int(match.group(1))
        if best is None or step > best[0]:
            best = (step, name)
    return None if best is None else join(dir_url, best[1])
