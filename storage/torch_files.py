"""Reading torch files (pickled checkpoints and TorchScript archives) from a path or fsspec URL.

The only place the project hands a file to `torch.load` / `torch.jit.load`. Local files are
passed by path, so torch reads the records it needs straight from disk (a 1 GB checkpoint is
never copied into a bytes buffer first); other filesystems are streamed through an fsspec file
object. Error wording belongs to the callers: these functions raise what torch and the
filesystem raise.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from typing import IO, Any

import torch
from fsspec.implementations.local import LocalFileSystem

from storage.fs import open_fs

TorchSource = str | os.PathLike[str] | IO[bytes]  # a path / fsspec URL, or an open binary file


def load_torch(source: TorchSource, safe_globals: Iterable[type] = (),
               map_location: str | torch.device = "cpu") -> Any:
    """torch.load with weights_only=True; `safe_globals` are admitted for this call only.

    Args:
        source: local path, fsspec URL, or an open binary file.
        safe_globals: extra classes the file may reference (e.g. argparse.Namespace).
        map_location: device for the tensors.
    """
    with torch.serialization.safe_globals(list(safe_globals)):
        if not isinstance(source, (str, os.PathLike)):
            return torch.load(source, map_location=map_location, weights_only=True)
        fs, path = open_fs(os.fspath(source))
        if isinstance(fs, LocalFileSystem):
            return torch.load(path, map_location=map_location, weights_only=True)
        with fs.open(path, "rb") as f:
            return torch.load(f, map_location=map_location, weights_only=True)


def load_torchscript(source: TorchSource, map_location: str | torch.device = "cpu"
                     ) -> torch.jit.ScriptModule:
    """torch.jit.load a TorchScript archive (its code is loaded, never run here).

    Args:
        source: local path, fsspec URL, or an open binary file.
        map_location: device for the tensors.
    """
    with warnings.catch_warnings():
        # torch deprecates TorchScript, but it is the format OpenAI and facer published in.
        warnings.simplefilter("ignore", FutureWarning)
        if not isinstance(source, (str, os.PathLike)):
            return torch.jit.load(source, map_location=map_location)
        fs, path = open_fs(os.fspath(source))
        if isinstance(fs, LocalFileSystem):
            return torch.jit.load(path, map_location=map_location)
        # torch.jit.load reads a file object whole anyway; fetch it once, then parse.
        return torch.jit.load(io.BytesIO(fs.cat_file(path)), map_location=map_location)
