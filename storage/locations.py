"""Locations stored inside a directory (a registry) relative to it, so the directory can move.

`relative_location(base, target)` gives a path from directory `base` to `target` when both are
on the same filesystem (local, or the same protocol), else `target` as an absolute URL/path;
`resolve_location(base, stored)` turns it back into a usable URL.
"""

from __future__ import annotations

import os
import posixpath


def _split(url: str) -> tuple[str, str]:
    """(protocol or "", path); local paths are made absolute."""
    if "://" in url:
        protocol, rest = url.split("://", 1)
        return protocol, rest
    return "", os.path.abspath(url)


def relative_location(base: str, target: str) -> str:
    """`target` relative to directory `base` if they share a filesystem, else absolute."""
    base_protocol, base_path = _split(base)
    protocol, path = _split(target)
    if protocol != base_protocol:
        return target if protocol else path
    if not protocol:
        return os.path.relpath(path, base_path)
    return posixpath.relpath("/" + path.lstrip("/"), "/" + base_path.lstrip("/"))


def resolve_location(base: str, stored: str) -> str:
    """The URL that `stored` (from relative_location) names, seen from directory `base`."""
    if "://" in stored or os.path.isabs(stored):
        return stored
    protocol, base_path = _split(base)
    if not protocol:
        return os.path.normpath(os.path.join(base_path, stored))
    joined = posixpath.normpath(posixpath.join("/" + base_path.lstrip("/"), stored))
    lead = "/" if base_path.startswith("/") else ""
    return f"{protocol}://{lead}{joined.lstrip('/')}"
