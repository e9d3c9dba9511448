"""Resolve dataset and checkpoint URLs to fsspec filesystems.

Every path the project reads or writes goes through `open_fs`, so a local path, `memory://`
(tests) and `s3://` (with s3fs installed) behave the same. Errors from a missing filesystem
package or an unknown protocol become a DatasetError that names the URL and the fix.
"""

from __future__ import annotations

import logging
import posixpath
import uuid

import fsspec
from fsspec.core import url_to_fs
from fsspec.registry import known_implementations

from mm2latent.errors import DatasetError

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
    try:
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
        raise DatasetError(
            f"{url}: cannot write a test file ({type(e).__name__}: {e}). Fix: check credentials "
            "and network access for this storage."
        ) from e


def exists(url: str) -> bool:
    """Whether a file or folder exists at `url`."""
    fs, path = open_fs(url)
    return fs.exists(path)
