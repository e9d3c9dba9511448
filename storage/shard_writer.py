"""Deterministic WebDataset tar shards.

Why `tarfile` and not `webdataset.TarWriter`: TarWriter (1.x) can fix mtime, mode, uname and
gname, but not uid/gid (left at TarInfo's defaults), runs an auto-encoder over the sample,
opens string paths with its own `gopen` (not fsspec) and does not close a caller's file object
(FACTS.md). We need fsspec + atomic commit, per-member sha256 for the manifest and a streaming
sha256 of the whole tar, so writing the few TarInfo fields ourselves is simpler and every
header byte is explicit: identical samples in the same order give a byte-identical tar.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Protocol, runtime_checkable

import numpy as np

from storage.atomic import AtomicFile

KEY_DIGITS = 9  # keys are zero-padded global sample indices: 000000042
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")  # no dots (WebDataset splits key/ext at the first dot)
_EXT_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_PICKLE_EXTS = ("pyd", "pickle", "pkl", "pth", "pt")  # formats that unpickle on read


def sample_key(index: int) -> str:
    """The tar key of global sample `index` (9-digit zero-padded)."""
    if index < 0 or index >= 10**KEY_DIGITS:
        raise ValueError(f"sample index {index} is outside [0, {10**KEY_DIGITS})")
    return f"{index:0{KEY_DIGITS}d}"


def encode_npy(array: np.ndarray) -> bytes:
    """`.npy` bytes of a numeric array, written with allow_pickle=False."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def encode_json(obj: object) -> bytes:
    """Deterministic UTF-8 JSON (sorted keys, no whitespace variation)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _check_npy(key: str, ext: str, data: bytes) -> None:
    """Reject `.npy` members that need pickle to load (object dtype) or are not npy at all."""
    try:
        # Members are small vectors (a few KiB), so a full load is the simplest exact check.
        np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as e:
        raise ValueError(
            f"sample {key!r}: member {ext!r} is not a pickle-free .npy file ({e}); store numeric "
            "arrays only (use storage.shard_writer.encode_npy)."
        ) from e


@dataclass(frozen=True)
class MemberInfo:
    """Size and digest of one tar member's payload."""

    size: int  # payload bytes (without tar header/padding)
    sha256: str  # hex digest of the payload


@dataclass(frozen=True)
class ShardResult:
    """What a closed shard holds: the manifest and stats files are built from this."""

    url: str  # final URL of the shard file
    count: int  # samples written
    size: int  # bytes of the shard file
    sha256: str  # hex digest of the whole shard file
    members: dict[str, dict[str, MemberInfo]] = field(default_factory=dict)  # key -> ext -> info


@runtime_checkable
class ShardSink(Protocol):
    """Where a stage writes the samples of one shard; `close` commits and reports it."""

    def write(self, sample: Mapping[str, bytes | str], key: str) -> None:
        """Add one sample: extension (e.g. 'jpg', 'mask.png', 'w.npy') -> payload."""
        ...

    def close(self) -> ShardResult:
        """Finish the shard, make it visible under its final name and describe it."""
        ...


class _HashingWriter:
    """Write-through file wrapper that counts bytes and hashes them (tarfile needs tell())."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.position = 0

    def write(self, data: bytes) -> int:
        """Hash, count and forward `data`."""
        self.digest.update(data)
        self.position += len(data)
        return self.raw.write(data)

    def tell(self) -> int:
        """Bytes written so far (tarfile asks for the offset)."""
        return self.position


class TarShardWriter:
    """A ShardSink writing a byte-deterministic USTAR tar through an atomic temp file.

    Headers are fixed (mtime 0, uid/gid 0, empty uname/gname, mode 0o644); members of a sample
    are written in sorted extension order, samples in call order. Use as a context manager:
    an exception inside the block discards the shard and leaves nothing at `url`.

    Args:
        url: final shard URL, e.g. `.../shard-000000.tar`.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._atomic = AtomicFile(url)
        self._out = _HashingWriter(self._atomic.open())
        self._tar = tarfile.open(fileobj=self._out, mode="w", format=tarfile.USTAR_FORMAT)
        self._members: dict[str, dict[str, MemberInfo]] = {}
        self._result: ShardResult | None = None

    def write(self, sample: Mapping[str, bytes | str], key: str) -> None:
        """Add one sample (extension -> bytes or str, str stored as UTF-8) under `key`.

        Args:
            sample: members of the sample; no '__key__' entry, extensions without a leading dot.
            key: the sample key (no dots or slashes), unique within the shard.
        """
        if self._result is not None:
            raise ValueError(f"{self.url}: write() after close()")
        payloads = self._validate(sample, key)
        infos = {}
        for ext in sorted(payloads):
            data = payloads[ext]
            header = tarfile.TarInfo(f"{key}.{ext}")
            header.size = len(data)
            header.mtime = 0
            header.mode = 0o644
            header.uid = header.gid = 0
            header.uname = header.gname = ""
            header.type = tarfile.REGTYPE
            self._tar.addfile(header, io.BytesIO(data))
            infos[ext] = MemberInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        self._members[key] = infos

    def _validate(self, sample: Mapping[str, bytes | str], key: str) -> dict[str, bytes]:
        """Check key and extensions; return the payloads as bytes."""
        if not _KEY_RE.match(key):
            raise ValueError(f"sample key {key!r} must be non-empty [A-Za-z0-9_-] (no dots)")
        if key in self._members:
            raise ValueError(f"{self.url}: duplicate sample key {key!r}")
        if not sample:
            raise ValueError(f"sample {key!r} has no members")
        payloads = {}
        for ext, value in sample.items():
            if not _EXT_RE.match(ext):
                raise ValueError(f"sample {key!r}: bad member extension {ext!r} (e.g. 'mask.png')")
            if ext.rsplit(".", 1)[-1] in _PICKLE_EXTS:
                raise ValueError(f"sample {key!r}: pickle-based member {ext!r} is not allowed")
            data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            if ext.endswith("npy"):
                _check_npy(key, ext, data)
            payloads[ext] = data
        return payloads

    def close(self) -> ShardResult:
        """Write the tar end blocks, commit the file under `url` and return its description."""
        if self._result is not None:
            return self._result
        self._tar.close()  # writes the end-of-archive blocks; does not close our file object
        self._atomic.commit()
        self._result = ShardResult(
            url=self.url,
            count=len(self._members),
            size=self._out.position,
            sha256=self._out.digest.hexdigest(),
            members=self._members,
        )
        return self._result

    def abort(self) -> None:
        """Discard the shard: nothing appears at `url`."""
        if self._result is None:
            self._atomic.discard()

    def __enter__(self) -> TarShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
