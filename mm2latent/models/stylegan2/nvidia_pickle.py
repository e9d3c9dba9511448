"""Safe reader for NVIDIA stylegan2-ada-pytorch network pickles (`ffhq.pkl`).

The official files are plain `pickle.dump`s of "persistent" modules: each module is a call to
`torch_utils.persistence._reconstruct_persistent_obj(meta)` whose `meta["module_src"]` holds
the module's Python source, which the official loader `exec`s. This reader instead maps that
global to a stand-in that keeps the pickled attribute dict and never looks at the source, and
refuses every global outside a short allow-list, so a crafted file cannot run code.
"""

from __future__ import annotations

import collections
import io
import logging
import pickle
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch

from mm2latent_core.errors import CheckpointError

logger = logging.getLogger(__name__)

PERSISTENCE_VERSION = 6  # torch_utils.persistence._version of stylegan2-ada-pytorch / stylegan3


@dataclass
class PersistentObject:
    """What `_reconstruct_persistent_obj(meta)` described: a class name and its attribute dict.

    `module_src` is kept only so callers can inspect it; nothing here ever executes it.
    """

    class_name: str
    state: dict[str, Any]
    version: int
    module_src: str = field(repr=False, default="")


class EasyDictStandIn(dict):
    """Stand-in for `dnnlib.util.EasyDict`: a plain dict (attribute access is not needed)."""


def _numpy_scalar_function() -> Any:
    """numpy's scalar-rebuild function, found without importing `numpy.core` (deprecated in 2.x)."""
    return np.float64(0).__reduce__()[0]


def _make_reconstruct(path: str):
    """The stand-in for `_reconstruct_persistent_obj`: record the meta, never exec its source."""

    def reconstruct(meta: Any) -> PersistentObject:
        if not isinstance(meta, dict) or meta.get("type") != "class":
            raise CheckpointError(path, f"persistent object meta is not a class record: {type(meta).__name__}")
        state = meta.get("state")
        if not isinstance(state, dict):
            raise CheckpointError(path, f"persistent object {meta.get('class_name')!r} has no state dict")
        version = meta.get("version")
        if version != PERSISTENCE_VERSION:
            logger.warning("%s: persistence version %r (expected %d); reading it anyway",
                           path, version, PERSISTENCE_VERSION)
        return PersistentObject(class_name=str(meta.get("class_name")), state=dict(state),
                                version=version, module_src=str(meta.get("module_src", "")))

    return reconstruct


def _make_load_from_bytes(path: str):
    """Stand-in for `torch.storage._load_from_bytes`: the same legacy torch file, read weights-only."""

    def load_from_bytes(data: bytes) -> Any:
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for a bad embedded storage
            raise CheckpointError(path, f"an embedded tensor storage is unreadable: {e}") from e

    return load_from_bytes


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that admits only the globals an NVIDIA network pickle needs."""

    def __init__(self, file: BinaryIO, path: str) -> None:
        super().__init__(file)
        self.path = path
        easydict = EasyDictStandIn
        scalar = _numpy_scalar_function()
        # (module, name) -> object. Old files name numpy.core, numpy 2 files numpy._core.
        self.allowed: dict[tuple[str, str], Any] = {
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _make_reconstruct(path),
            ("dnnlib.util", "EasyDict"): easydict,
            ("dnnlib", "EasyDict"): easydict,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
            ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
            ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
            ("torch.storage", "_load_from_bytes"): _make_load_from_bytes(path),
            ("numpy.core.multiarray", "scalar"): scalar,
            ("numpy._core.multiarray", "scalar"): scalar,
            ("numpy", "dtype"): np.dtype,
            ("builtins", "set"): set,  # pickle protocol 3 writes sets this way
            ("__builtin__", "set"): set,  # ... and protocol 2 with Python 2 module names
            ("_codecs", "encode"): _latin1_encode,  # protocol 2 writes bytes this way
        }

    def find_class(self, module: str, name: str) -> Any:
        """Return an allow-listed global; refuse anything else, naming it and the file."""
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise CheckpointError(
                self.path, f"refusing to unpickle global {module}.{name}: it is not part of an "
                "NVIDIA stylegan2-ada-pytorch network pickle.",
                fix="Only load files from a source you trust; this reader never runs embedded code.",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        """Plain `pickle.dump` files have no persistent ids; torch.save files need torch.load."""
        raise CheckpointError(self.path, "pickle uses persistent ids (a torch.save file?), "
                              "not an NVIDIA network pickle.")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Protocol-2 bytes rebuild (`_codecs.encode(str, 'latin1')`), limited to that one codec."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"unexpected _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def read_network_pickle(file: BinaryIO, path: str) -> Any:
    """Unpickle an NVIDIA network pickle with the restricted unpickler; errors name `path`."""
    try:
        return RestrictedUnpickler(file, path).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, RuntimeError) as e:
        raise CheckpointError(path, f"not a readable NVIDIA network pickle (truncated or corrupt): "
                              f"{type(e).__name__}: {e}") from e


def flatten_persistent_state(obj: PersistentObject, path: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state_dict of a persistent module tree: parameters and persistent buffers by dotted name."""
    out: dict[str, torch.Tensor] = {}
    state = obj.state
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        tensors = state.get(group)
        if not isinstance(tensors, dict):
            raise CheckpointError(path, f"module {prefix or '<root>'} ({obj.class_name}) has no {group} dict")
        for name, tensor in tensors.items():
            if tensor is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise CheckpointError(path, f"{prefix}{name} is a {type(tensor).__name__}, not a tensor")
            out[prefix + name] = tensor.detach()
    modules = state.get("_modules")
    if not isinstance(modules, dict):
        raise CheckpointError(path, f"module {prefix or '<root>'} ({obj.class_name}) has no _modules dict")
    for name, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise CheckpointError(path, f"submodule {prefix}{name} is a {type(child).__name__}, "
                                  "not a persistent module")
        out.update(flatten_persistent_state(child, path, prefix + name + "."))
    return out
