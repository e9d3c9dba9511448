"""Resolve dataset and checkpoint URLs to fsspec filesystems.

Every path the project reads or writes goes through `open_fs`, so a local path, `memory://`
(tests) and `s3://` (with s3fs installed) behave the same. Errors from a missing filesystem
package or an unknown protocol become a DatasetError that names the URL and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import posixpath
import uuid
from collections.abc import Iterator, Sequence
from typing import IO

import fsspec
from fsspec.core import url_to_fs
from fsspec.registry import known_implementations

from mm2latent_core.errors import DatasetError

logger = logging.getLogger(__name__)

# Protocols whose fsspec implementation lives in a package with a different pip name than the
# module named in fsspec's registry (s3 -> s3fs is the common case; others for completeness).
_PIP_PACKAGE = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "abfs": "adlfs",
    "az": "adlfs",
    "adl": "adlfs",
    "hf": "huggingface_hub",
}


# Object stores whose PUT (single or multipart) makes a key appear complete or not at all: an
# atomic write needs no temp object there, and "directories" and buckets are never created.
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "az"})

_ENDPOINT_FIX = ("Fix: check the endpoint (FSSPEC_S3_ENDPOINT_URL, see the README's object "
                 "store section) and that the server is running and reachable.")
_CREDENTIALS_FIX = ("Fix: set FSSPEC_S3_KEY and FSSPEC_S3_SECRET (or AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY, or an AWS profile) for this endpoint.")


def protocol_of(url: str) -> str:
    """The URL's protocol ('file' for a plain path)."""
    return url.split("://", 1)[0] if "://" in url else "file"


def _install_hint(protocol: str) -> str:
    """A pip command that installs the filesystem package for `protocol`."""
    package = _PIP_PACKAGE.get(protocol)
    if package is None:
        spec = known_implementations.get(protocol, {})
        package = spec.get("class", "").split(".")[0] or f"the fsspec package for {protocol!r}"
    return f"pip install {package}"


def open_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Resolve `url` to (filesystem, path inside it).

    Args:
        url: local path, `file://`, `memory://`, `s3://` or any fsspec URL.

    Raises:
        DatasetError: the protocol is unknown or its package is not installed.
    """
    protocol = protocol_of(url)
    try:
        return url_to_fs(url)
    except ImportError as e:
        raise DatasetError(
            f"{url}: cannot open the {protocol!r} filesystem ({e}). Fix: {_install_hint(protocol)}."
        ) from e
    except ValueError as e:
        known = ", ".join(sorted(p for p in known_implementations if p.isidentifier())[:40])
        raise DatasetError(
            f"{url}: unknown protocol {protocol!r} ({e}). Use a local path or one of: {known}."
        ) from e


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    """True for filesystems with atomic object uploads and no real directories (S3, GCS, Azure)."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in OBJECT_STORES for p in protocols)


def bucket_of(path: str) -> str:
    """The bucket (first component) of an object-store path inside its filesystem."""
    return path.lstrip("/").split("/", 1)[0]


def endpoint_of(fs: fsspec.AbstractFileSystem) -> str:
    """The endpoint URL an object-store filesystem talks to (for messages)."""
    kwargs = getattr(fs, "client_kwargs", None) or {}
    return str(getattr(fs, "endpoint_url", None) or kwargs.get("endpoint_url") or "the default endpoint")


def check_bucket(url: str) -> None:
    """On object stores, fail unless the URL's bucket exists; the project never creates buckets.

    A mistyped bucket would otherwise be created silently by the first write.

    Raises:
        DatasetError: naming the bucket, the endpoint and the fix.
    """
    fs, path = open_fs(url)
    if not is_object_store(fs):
        return
    bucket = bucket_of(path)
    try:
        with storage_errors(url):
            if hasattr(fs, "call_s3"):  # unlike exists(), surfaces endpoint and credential faults
                fs.call_s3("head_bucket", Bucket=bucket)
            elif not fs.exists(bucket):
                raise FileNotFoundError(bucket)
    except FileNotFoundError as e:
        raise DatasetError(
            f"{url}: bucket {bucket!r} does not exist at {endpoint_of(fs)}. Fix: correct the URL, "
            f"or create the bucket first (e.g. `aws s3 mb {protocol_of(url)}://{bucket}`); "
            "mm2latent never creates buckets.") from e


def make_parent_dirs(fs: fsspec.AbstractFileSystem, dir_path: str, url: str) -> None:
    """Create directory `dir_path` for a write; on object stores only check that the bucket exists."""
    if is_object_store(fs):
        check_bucket(url)
    else:
        fs.makedirs(dir_path, exist_ok=True)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def as_user_error(exc: BaseException, urls: Sequence[str] = ()) -> DatasetError | None:
    """A one-line DatasetError for storage faults a user can fix, else None (a bug: keep the traceback).

    Recognises an unreachable object-store endpoint, missing or refused credentials and a full
    disk, anywhere in the exception chain. Object-store clients are matched by class name so
    that this module does not import botocore (an optional dependency).

    Args:
        exc: the exception that escaped a command.
        urls: the command's storage URLs, named in the message.
    """
    where = ", ".join(u for u in urls if u) or "storage"
    for e in _chain(exc):
        names = _class_names(e)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            target = e.filename or where
            return DatasetError(
                f"disk full while writing {target}. Fix: free space (or use another --out), then "
                "re-run the same command: finished shards and checkpoints are kept and resumed.")
        if names & {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"}:
            return DatasetError(f"{where}: cannot reach the object store ({e}). {_ENDPOINT_FIX}")
        if names & {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"}:
            return DatasetError(f"{where}: no usable credentials ({e}). {_CREDENTIALS_FIX}")
        if isinstance(e, PermissionError) and any(protocol_of(u) in OBJECT_STORES for u in urls):
            return DatasetError(f"{where}: access denied ({e}). {_CREDENTIALS_FIX}")
    return None


@contextlib.contextmanager
def storage_errors(*urls: str) -> Iterator[None]:
    """Re-raise user-fixable storage faults (see `as_user_error`) as DatasetError naming `urls`."""
    try:
        yield
    except DatasetError:
        raise
    except Exception as e:
        error = as_user_error(e, urls)
        if error is None:
            raise
        raise error from e


def join(url: str, *names: str) -> str:
    """Append path components to a URL, keeping its protocol (`memory://a` + `b` -> `memory://a/b`)."""
    if not names:
        return url
    tail = posixpath.join(*names)
    return url.rstrip("/") + "/" + tail.lstrip("/")


def basename(url: str) -> str:
    """The last path component of a URL or path."""
    return posixpath.basename(url.rstrip("/"))


def dirname(url: str) -> str:
    """The URL of the directory holding `url` (protocol kept)."""
    stripped = url.rstrip("/")
    head, sep, _ = stripped.rpartition("/")
    if not sep:
        return "."
    if not head:
        return "/"
    # "memory://x" has its parent "memory:/" after rpartition; keep the "://" intact.
    return head + "/" if head.endswith(":/") else head


def check_writable(url: str) -> None:
    """Fail fast unless a file can be created (and removed) under directory `url`.

    Args:
        url: the output directory; created if missing.

    Raises:
        DatasetError: naming the URL and how to fix it (install a package, permissions, credentials).
    """
    fs, root = open_fs(url)
    probe = posixpath.join(root, f".write-probe-{uuid.uuid4().hex}")
    if is_object_store(fs):
        check_bucket(url)
    try:
        if not is_object_store(fs):
            fs.makedirs(root, exist_ok=True)
        with fs.open(probe, "wb") as f:
            f.write(b"ok")
        fs.rm(probe)
    except PermissionError as e:
        raise DatasetError(
            f"{url}: not writable ({e}). Fix: choose another --out or grant write permission."
        ) from e
    except OSError as e:
        raise DatasetError(
            f"{url}: cannot write a test file ({e}). Fix: check that the location exists, the "
            "disk has space and, for object stores, that credentials are configured."
        ) from e
    except Exception as e:  # object-store clients raise their own types for auth/network errors
        error = as_user_error(e, [url])
        if error is not None:
            raise error from e
        raise DatasetError(
            f"{url}: cannot write a test file ({type(e).__name__}: {e}). Fix: check credentials "
            "and network access for this storage."
        ) from e


def exists(url: str) -> bool:
    """Whether a file or folder exists at `url`."""
    fs, path = open_fs(url)
    return fs.exists(path)


def read_file(url: str) -> bytes:
    """The whole content of the file at `url`; FileNotFoundError if it is missing."""
    fs, path = open_fs(url)
    return fs.cat_file(path)


@contextlib.contextmanager
def open_read(url: str) -> Iterator[IO[bytes]]:
    """A binary file object for reading `url` (streamed: nothing is read up front).

    Raises:
        FileNotFoundError, IsADirectoryError, PermissionError: as the filesystem reports them.
    """
    fs, path = open_fs(url)
    with fs.open(path, "rb") as f:
        yield f


def is_file(url: str) -> bool:
    """Whether a regular file exists at `url`."""
    fs, path = open_fs(url)
    return fs.isfile(path)


def list_names(url: str) -> list[str]:
    """Base names of the entries directly under directory `url`, sorted; [] if it is missing.

    The listing cache is dropped first: other processes may have written since the last one.
    """
    fs, root = open_fs(url)
    fs.invalidate_cache(root)
    try:
        entries = fs.ls(root, detail=False)
    except FileNotFoundError:
        return []
    return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

