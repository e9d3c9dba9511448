"""Resumable, verified HTTP download of one file (stdlib urllib only).

The bytes stream into `<dest>.part`. An interrupted transfer leaves that file behind and the
next call resumes it with an HTTP Range request; a server that ignores Range (answers 200
instead of 206) makes us start again from byte 0. Size and sha256 are checked on the complete
`.part` BEFORE it is moved over `dest` by `storage.atomic.publish` (fsync, rename, directory
fsync: the commit every atomic write in the project uses), so `dest` only ever holds a file
that passed the checks, and an existing good `dest` survives a failed or corrupt download.
Local files only: the weights cache is a local directory.

The library never prints: callers pass a `progress(done_bytes, total_bytes_or_None)` callback.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mm2latent.errors import ConfigError, DownloadError, WeightsIntegrityError
from storage.atomic import publish
from storage.digests import file_sha256

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, "int | None"], None]

# HTTP statuses worth retrying: request timeout, rate limit and server-side failures.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSATISFIED = re.compile(r"bytes\s+\*/(\d+)")  # sent with HTTP 416


@dataclass(frozen=True)
class DownloadCfg:
    """Network settings for `download`."""

    timeout: float = 30.0       # seconds without data before a socket read fails; > 0
    retries: int = 3            # extra attempts after the first; 0 = try once
    retry_wait: float = 1.0     # seconds before the first retry, doubled for each later one
    chunk_size: int = 1 << 20   # bytes per read/write and per progress call
    user_agent: str = "mm2latent-weights/0.1"  # some CDNs reject urllib's default agent

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.retries < 0 or self.retry_wait < 0 or self.chunk_size <= 0:
            raise ConfigError(
                f"DownloadCfg needs timeout > 0, retries >= 0, retry_wait >= 0 and "
                f"chunk_size > 0; got {self}.")


@dataclass(frozen=True)
class DownloadResult:
    """What `download` wrote."""

    path: Path          # final location (== dest)
    sha256: str         # hex digest of the complete file
    size: int           # bytes
    resumed_from: int   # bytes of an earlier `.part` reused by the last attempt; 0 = fresh
    attempts: int       # HTTP requests made, 1 = no retry


class _Transient(Exception):
    """A failure that a retry (resuming the `.part`) may fix."""


def part_path(dest: Path) -> Path:
    """Return the temporary `.part` path used while downloading `dest`."""
    return dest.with_suffix(dest.suffix + ".part")


def download(
    url: str,
    dest: Path,
    expected_sha256: str | None,
    expected_size: int | None,
    *,
    config: DownloadCfg = DownloadCfg(),
    progress: ProgressFn | None = None,
) -> DownloadResult:
    """Download `url` to `dest`, resuming a left-over `.part`, verifying before the rename.

    Args:
        url: http(s) URL of the file.
        dest: final path; its parent is created. Replaced only by a file that passed the checks.
        expected_sha256: full hex digest to enforce; None = compute it and return it.
        expected_size: size in bytes to enforce; None = accept what the server sends.
        config: timeouts and retries.
        progress: called as progress(done_bytes, total_bytes or None) after each chunk.

    Returns:
        DownloadResult with the digest and size of the file now at `dest`.

    Raises:
        DownloadError: network/HTTP failure after all retries (the `.part` is kept for resuming).
        WeightsIntegrityError: wrong size or sha256 (the `.part` is deleted, `dest` untouched).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    last_error: Exception | None = None
    resumed_from = 0
    attempt = 0
    for attempt in range(1, config.retries + 2):
        try:
            resumed_from = _transfer(url, part, expected_size, config, progress)
            break
        except _Transient as e:
            last_error = e.__cause__ or e
            logger.info("download of %s failed (attempt %d): %s", url, attempt, last_error)
            if attempt <= config.retries:
                time.sleep(config.retry_wait * 2 ** (attempt - 1))
    else:
        have = part.stat().st_size if part.exists() else 0
        raise DownloadError(
            f"Downloading {url} failed after {attempt} attempt(s): {last_error}. "
            f"{have} bytes are kept in {part}; re-run the same command to resume."
        ) from last_error
    return _verify_and_install(url, part, dest, expected_sha256, expected_size,
                               resumed_from, attempt, config.chunk_size)


def _verify_and_install(url: str, part: Path, dest: Path, expected_sha256: str | None,
                        expected_size: int | None, resumed_from: int, attempts: int,
                        chunk_size: int) -> DownloadResult:
    """Check the finished `.part`, then atomically rename it to `dest`."""
    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise WeightsIntegrityError(
            f"Download of {url} has {size} bytes, expected {expected_size}; deleted it "
            f"({dest} left as it was). Re-run the fetch; if it persists the upstream file "
            "changed and the registry entry in mm2latent/weights.py needs updating."
        )
    # Hash from disk rather than while streaming: a resumed file's first bytes came from an
    # earlier process, and one sequential read is cheap next to the transfer itself.
    digest = file_sha256(part, chunk_size)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        part.unlink()
        raise WeightsIntegrityError(
            f"Download of {url} has sha256 {digest}, expected {expected_sha256}; deleted it "
            f"({dest} left as it was). Re-run the fetch; if it persists the upstream file "
            "changed or the download is being tampered with."
        )
    publish(os.fspath(part), os.fspath(dest))  # the same commit as every atomic write
    return DownloadResult(dest, digest, size, resumed_from, attempts)


def _transfer(url: str, part: Path, expected_size: int | None, config: DownloadCfg,
              progress: ProgressFn | None) -> int:
    """Make one HTTP request and append to (or restart) `part`; return the resumed offset."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
        offset = 0
    if expected_size is not None and offset == expected_size and offset > 0:
        return offset  # already complete; the checks decide whether it is right
    request = urllib.request.Request(url, headers={"User-Agent": config.user_agent})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=config.timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return _handle_unsatisfiable_range(e, url, part, offset, expected_size, config,
                                               progress)
        raise _http_failure(e, url) from e
    except (urllib.error.URLError, OSError) as e:  # refused, DNS, timeout, reset
        raise _Transient(str(e)) from e
    with response:
        start, total = _response_range(response, offset)
        if start != offset:
            logger.info("server did not resume %s at %d; restarting from 0", url, offset)
        _stream(response, part, start, total, config, progress)
    return start


def _handle_unsatisfiable_range(error: urllib.error.HTTPError, url: str, part: Path,
                                offset: int, expected_size: int | None,
                                config: DownloadCfg, progress: ProgressFn | None) -> int:
    """Answer HTTP 416 to our Range: the `.part` is complete or too long for the file."""
    match = _CONTENT_RANGE_UNSATISFIED.match(error.headers.get("Content-Range", "") or "")
    error.close()
    if match is not None and int(match.group(1)) == offset:
        return offset  # the .part already holds every byte; the checks decide if it is right
    logger.info("server refused range %d- of %s; restarting from 0", offset, url)
    part.unlink()
    return _transfer(url, part, expected_size, config, progress)


def _http_failure(error: urllib.error.HTTPError, url: str) -> Exception:
    """Map an HTTP error status to a retryable _Transient or a final DownloadError."""
    error.close()
    if error.code in _RETRY_STATUSES:
        return _Transient(f"HTTP {error.code}")
    return DownloadError(
        f"Downloading {url} failed with HTTP {error.code} {error.reason}. Check the URL in "
        "mm2latent/weights.py and whether the file moved upstream."
    )


def _response_range(response: http.client.HTTPResponse, offset: int) -> tuple[int, int | None]:
    """Return (first byte this response carries, total file size or None)."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            raise _Transient(f"bad Content-Range {response.headers.get('Content-Range')!r}")
        total = None if match.group(3) == "*" else int(match.group(3))
        return offset, total
    # 200 (or any other success): the server sends the whole file from byte 0.
    return 0, int(length) if length is not None else None


def _stream(response: http.client.HTTPResponse, part: Path, start: int, total: int | None,
            config: DownloadCfg, progress: ProgressFn | None) -> None:
    """Copy the response body into `part` from byte `start`, failing on a short body."""
    done = start
    with open(part, "ab" if start else "wb") as f:
        try:
            while block := response.read(config.chunk_size):
                f.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        except (http.client.HTTPException, OSError) as e:  # IncompleteRead, reset, timeout
            raise _Transient(f"connection lost after {done} bytes: {e!r}") from e
    if total is not None and done < total:
        raise _Transient(f"connection closed after {done} of {total} bytes")
