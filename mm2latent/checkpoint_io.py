"""Reading official torch checkpoints safely and copying them strictly into our modules.

Every loader ports an upstream file into a module whose parameter names follow upstream, so
all need the same two things: read a torch file with weights_only (extra classes admitted per
call, never globally), and copy a state dict strictly with errors that name the file, the key
and the expected vs found shape.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mm2latent.errors import CheckpointError, refused_globals, refused_message, unpickler_detail
from storage.fs import is_file
from storage.torch_files import load_torch

logger = logging.getLogger(__name__)

# BatchNorm's step counter is only used in training with momentum=None; files written before
# torch 0.4.1 lack it, so its absence is not a reason to reject a checkpoint.
OPTIONAL_KEY_SUFFIXES = ("num_batches_tracked",)
_MAX_LISTED = 8


def read_torch_checkpoint(path: str | os.PathLike[str], safe_globals: Iterable[type] = ()) -> Any:
    """torch.load a file or fsspec URL with weights_only=True; failures become CheckpointError.

    Args:
        path: local path or fsspec URL (zip or legacy torch serialisation).
        safe_globals: extra classes the file may reference (e.g. argparse.Namespace); admitted
            for this call only, never globally.
    """
    if not is_file(os.fspath(path)):
        raise CheckpointError(path, "file does not exist.", "Check the path or download it.")
    try:
        return load_torch(path, safe_globals)
    except pickle.UnpicklingError as e:
        refused = refused_globals(e)
        if refused:  # a well-formed file that names code to run: never "download it again"
            raise CheckpointError(path, refused_message(refused),
                                  "Use the official file for this loader.") from e
        raise _unreadable(path, e) from e
    except Exception as e:  # torch raises RuntimeError/EOFError/... for truncated files
        raise _unreadable(path, e) from e


def _unreadable(path: str | os.PathLike[str], error: BaseException) -> CheckpointError:
    return CheckpointError(
        path,
        f"cannot be read as a torch checkpoint ({type(error).__name__}: "
        f"{unpickler_detail(error)[:300]}).",
        "The file is truncated, corrupt or not the expected format: download it again.",
    )


def describe_container(obj: object) -> str:
    """Short description of a loaded checkpoint's top level, for 'wrong file' messages."""
    if isinstance(obj, dict):
        return f"a dict with keys {_listing(map(str, obj))}"
    return f"a {type(obj).__name__}"


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else "")


def load_state_checked(
    module: nn.Module,
    state: Mapping[str, Any],
    path: str | os.PathLike[str],
    file_prefix: str = "",
    allowed_extra: Callable[[str], bool] | None = None,
) -> list[str]:
    """Copy `state` into `module` strictly; return the allowed extra keys (with file_prefix).

    Every parameter/buffer of `module` must be present as `file_prefix + name` with the same
    shape (except OPTIONAL_KEY_SUFFIXES), and every key of `state` must be one of them or pass
    `allowed_extra`; otherwise CheckpointError names the file and the keys (or the expected vs
    found shape). A left-over key means the file holds a different network than the one built,
    so it is refused rather than ignored. Tensors are cast to the module's dtypes.

    Args:
        module: the freshly built module (defines the expected names and shapes).
        state: the file's flat name -> tensor mapping, already filtered to this module.
        path: the file, for messages.
        file_prefix: the prefix these names carry in the file (for messages only).
        allowed_extra: predicate on a key of `state` (without file_prefix) for documented
            extras the file may carry (e.g. FaRL's masked-image-modelling head); None = none.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_KEY_SUFFIXES)]
    extra = [k for k in state if k not in expected]
    allowed = [k for k in extra if allowed_extra is not None and allowed_extra(k)]
    check_key_sets(path, missing, [k for k in extra if k not in allowed], file_prefix)
    new_state = {}
    for key, ref in expected.items():
        if key not in state:
            new_state[key] = ref  # an optional counter: keep the module's own
            continue
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(path, f"key {file_prefix + key} is a {type(value).__name__}, "
                                        "not a tensor.")
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(
                path,
                f"key {file_prefix + key} has shape {tuple(value.shape)}, "
                f"expected {tuple(ref.shape)}.",
                "Is this the right file for this config?",
            )
        new_state[key] = value.to(ref.dtype)
    module.load_state_dict(new_state, strict=True)
    return [file_prefix + k for k in allowed]


def check_key_sets(path: str | os.PathLike[str], missing: Iterable[str], unexpected: Iterable[str],
                   file_prefix: str = "") -> None:
    """CheckpointError listing the missing and the left-over keys, if there are any."""
    missing, unexpected = list(missing), list(unexpected)
    if not missing and not unexpected:
        return
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {_listing(file_prefix + k for k in missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): "
                     f"{_listing(file_prefix + k for k in unexpected)}")
    raise CheckpointError(path, "; ".join(parts) + ". The file holds a different network than "
                          "the one its architecture implies.",
                          "Is this the right file for this config? A damaged or edited file "
                          "must be replaced by the official one.")


def expected_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter and persistent buffer (the checkpoint key list)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}
