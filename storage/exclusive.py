"""Create a file only if its name is free: the primitive that lets concurrent writers claim names.

Local disk: the content goes to a hidden temp file first (storage.atomic.AtomicFile), which is
then hard-linked to the final name (`AtomicFile.commit_new`); `link` fails if the name exists,
so exactly one writer wins and readers never see a partial file, across processes.
memory:// lives in one process, so a lock around check-and-write is enough there.
S3 and S3-compatible servers: a conditional write (`If-None-Match: *`, through s3fs's
`pipe_file(mode="create")`); the server stores the object only if the key is free, in one step.
A server that ignores the condition would let two writers both "win", so a probe object is
created twice first and a server that accepts the second write is refused.
Other filesystems (other object stores, FTP, ...) offer no such step: they are refused with an
ExclusiveCreateError rather than risk one writer silently overwriting another.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import threading
import time
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from mm2latent_core.errors import DatasetError
from storage.atomic import AtomicFile
from storage.fs import check_bucket, endpoint_of, open_fs, protocol_of, storage_errors

# memory:// is one dict per process, shared by all threads: one lock makes check-and-write atomic.
_MEMORY_LOCK = threading.Lock()
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
# S3 answers 409 ConditionalRequestConflict while another conditional write of the same key is
# in flight; the retry then sees that write's result (412: the name is taken).
_CONFLICT_RETRIES = 8
_CONFLICT_WAIT_S = 0.05  # doubled after each conflict
_PROBE_PREFIX = ".create-only-probe-"  # dot-prefixed: readers never look at it


class ExclusiveCreateError(DatasetError):
    """The filesystem cannot create a file only if its name is free."""


def create_exclusive(url: str, data: bytes) -> bool:
    """Write `data` to `url` unless a file is already there; True if this call created it.

    Args:
        url: destination file URL; its directory is created if missing.
        data: the complete file content.

    Raises:
        ExclusiveCreateError: the filesystem (or S3-compatible server) cannot create a file
            only if its name is free.
    """
    fs, path = open_fs(url)
    if isinstance(fs, LocalFileSystem):
        return _create_local(url, data)
    if isinstance(fs, MemoryFileSystem):
        with _MEMORY_LOCK:
            if fs.exists(path):
                return False
            fs.pipe_file(path, data)
            return True
    if _is_s3(fs):
        check_bucket(url)
        with storage_errors(url):
            check_conditional_writes(fs, posixpath.dirname(path), url)
            return _create_conditional(fs, path, data)
    raise ExclusiveCreateError(
        f"{url}: {protocol_of(url)}:// cannot create a file only if its name is free, so "
        "concurrent writers could overwrite each other's files. Fix: use a local (or shared) "
        "disk path or an s3:// store whose server supports conditional writes.")


def _is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    """True for s3fs (AWS S3 or an S3-compatible server)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return hasattr(fs, "call_s3") and any(p in _S3_PROTOCOLS for p in protocols)


def _create_local(url: str, data: bytes) -> bool:
    """Hard-link a complete temp file to the final name; False if that name already exists."""
    writer = AtomicFile(url)
    try:
        writer.open().write(data)
    except BaseException:
        writer.discard()
        raise
    return writer.commit_new()


def _create_conditional(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    """PUT `data` with If-None-Match: * ; False if the key exists (the server answers 412)."""
    wait_s = _CONFLICT_WAIT_S
    for _ in range(_CONFLICT_RETRIES):
        try:
            fs.pipe_file(path, data, mode="create")
            return True
        except OSError as e:
            status = _http_status(e)
            if isinstance(e, FileExistsError) or status == 412:  # the key exists
                return False
            if status != 409:
                raise
            time.sleep(wait_s)  # another conditional write of this key is in flight
            wait_s *= 2
    raise OSError(errno.EBUSY, f"{path}: conditional writes kept conflicting (409)", path)


def _http_status(error: OSError) -> int | None:
    """The HTTP status of the S3 response behind an s3fs error (botocore's ClientError)."""
    response = getattr(error.__cause__, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def check_conditional_writes(fs: fsspec.AbstractFileSystem, dir_path: str, url: str) -> None:
    """Refuse an S3-compatible server that ignores If-None-Match: * (it would let two creators win).

    Creates a probe object under `dir_path` twice with the condition; the second must be refused.

    Raises:
        ExclusiveCreateError: naming `url`, the endpoint and the fix.
    """
    probe = posixpath.join(dir_path, f"{_PROBE_PREFIX}{uuid.uuid4().hex}")
    fix = ("Fix: use a server version that supports conditional writes (AWS S3 does), or a "
           "local (or shared) disk path.")
    try:
        honoured = _create_conditional(fs, probe, b"") and not _create_conditional(fs, probe, b"")
    except OSError as e:
        if _http_status(e) not in (400, 501):  # a bad request or NotImplemented: the header
            raise
        raise ExclusiveCreateError(
            f"{url}: the object store at {endpoint_of(fs)} refused a conditional write "
            f"(If-None-Match: *: {e}), so files cannot be created only if their name is free. "
            f"{fix}") from e
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(probe)
    if not honoured:
        raise ExclusiveCreateError(
            f"{url}: the object store at {endpoint_of(fs)} ignores conditional writes "
            "(If-None-Match: *), so concurrent writers could overwrite each other's files. "
            f"{fix}")
