"""Atomic writes: a file appears under its final name complete or not at all.

Local disk and other filesystems: a writer fills `.<name>.tmp-<uuid32>` in the destination
directory, then moves it into place (local: fsync + os.replace, atomic on POSIX; others:
`fs.mv`). A crash leaves only the dot-prefixed temp file: readers never look at names that
start with a dot, and `remove_temp_files` (run by the next writer) deletes it.

Object stores (S3, GCS, Azure): an upload creates its key only when it completes, so the
writer uploads straight to the final key. No temp object exists to be left behind by a crash
between a copy and a delete, and no bucket is ever created (storage.fs.check_bucket). An
upload that fails is aborted; one cut short by a killed process stays as an unfinished
multipart upload (invisible, but billed) until `clean_interrupted_writes` aborts it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import time
import uuid
from typing import IO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from storage.fs import bucket_of, check_bucket, is_object_store, make_parent_dirs, open_fs

logger = logging.getLogger(__name__)

_TEMP_RE = re.compile(r"^\..+\.tmp-[0-9a-f]{32}$")
# A temp file or upload untouched this long belongs to a writer that is gone: where another
# writer may be active (run roots, registries, embeddings), only such leftovers are removed.
STALE_WRITE_S = 3600.0


def temp_name(name: str) -> str:
    """A fresh temporary file name for final name `name` (same directory, hidden, unique)."""
    return f".{name}.tmp-{uuid.uuid4().hex}"


def is_temp_name(name: str) -> bool:
    """True if `name` (a base name) is a temp file left by an atomic write."""
    return bool(_TEMP_RE.match(name))


class AtomicFile:
    """Context manager yielding a binary file that is committed to `url` only on success.

    On an exception inside the block the temp file is removed and nothing appears at `url`;
    an existing file at `url` is replaced only at commit.

    Args:
        url: final destination; its directory is created if missing.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._fs, self._path = open_fs(url)
        parent, name = posixpath.split(self._path)
        self._direct = is_object_store(self._fs)  # uploads are atomic: no temp object
        self._tmp_path = self._path if self._direct else posixpath.join(parent, temp_name(name))
        self._parent = parent
        self._file: IO[bytes] | None = None

    @property
    def _is_local(self) -> bool:
        return isinstance(self._fs, LocalFileSystem)

    def __enter__(self) -> IO[bytes]:
        return self.open()

    def open(self) -> IO[bytes]:
        """Create and open the temp file; prefer the `with` form, which commits or discards."""
        if self._file is not None:
            raise ValueError(f"{self.url}: AtomicFile is already open")
        make_parent_dirs(self._fs, self._parent, self.url)
        if self._is_local:
            self._file = open(self._tmp_path, "wb")  # noqa: SIM115 - closed in __exit__
        else:
            self._file = self._fs.open(self._tmp_path, "wb")
        return self._file

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    def commit(self) -> None:
        """Flush, close and move the temp file onto the final name."""
        if self._file is None:
            raise ValueError(f"{self.url}: commit() before open()")
        try:
            if self._is_local:
                self._close_synced()
                _replace_local(self._tmp_path, self._path)
            elif self._direct:
                self._file.close()  # completes the upload: the key appears whole
            else:
                self._file.close()  # remote writers upload on close
                self._fs.mv(self._tmp_path, self._path)
        except BaseException:
            self.discard()
            raise
        logger.debug("committed %s", self.url)

    def commit_new(self) -> bool:
        """Local disk only: publish the temp file under the final name unless that name exists.

        A hard link fails if the name is taken, so of several writers racing for one name exactly
        one wins, and readers never see a partial file. Returns whether this writer won; the temp
        file is removed either way.
        """
        if self._file is None or not self._is_local:
            raise ValueError(f"{self.url}: commit_new() needs an open local AtomicFile")
        try:
            self._close_synced()
            os.link(self._tmp_path, self._path)
            _fsync_dir(self._parent)
            return True
        except FileExistsError:
            return False
        finally:
            self.discard()

    def _close_synced(self) -> None:
        """Flush, fsync and close the local temp file: data on disk before a rename shows it."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        """Close and delete the temp file; the final name is left untouched."""
        if self._direct:
            self._abort_upload()
            return
        if self._file is not None and not self._file.closed:
            try:
                self._file.close()
            except Exception:  # a failing upload on close must not mask the original error
                logger.debug("closing %s failed while discarding", self._tmp_path, exc_info=True)
        try:
            if self._fs.exists(self._tmp_path):
                self._fs.rm(self._tmp_path)
        except OSError:
            logger.warning("could not remove temp file %s; the next run removes it", self._tmp_path)


    def _abort_upload(self) -> None:
        """Object stores: drop the upload in progress, never completing it (closing would)."""
        if self._file is None or self._file.closed:
            return
        try:
            discard = getattr(self._file, "discard", None)
            if discard is not None:
                discard()  # s3fs: aborts the multipart upload
        except Exception:  # must not mask the original error; the next run's clean-up retries
            logger.warning("could not abort the upload of %s; the next run aborts it", self.url,
                           exc_info=True)
        self._file.closed = True  # never let close() (or garbage collection) commit it


def _replace_local(tmp_path: str, path: str) -> None:
    """Rename a synced local temp file onto `path` and persist the rename."""
    os.replace(tmp_path, path)
    _fsync_dir(os.path.dirname(path))


def publish(temp_url: str, url: str) -> None:
    """Move a finished temp file written beside `url` onto `url`, as AtomicFile.commit does.

    For writers whose temp file outlives one process, e.g. a resumable download's `.part`:
    locally it is fsynced, renamed over `url` and the rename persisted; elsewhere moved.

    Args:
        temp_url: the complete temp file, in the same directory as `url`.
        url: the final name; an existing file there is replaced.
    """
    fs, tmp_path = open_fs(temp_url)
    _, path = open_fs(url)
    if not isinstance(fs, LocalFileSystem):
        fs.mv(tmp_path, path)
        return
    with open(tmp_path, "rb+") as f:  # flush to disk before the rename makes it visible
        os.fsync(f.fileno())
    _replace_local(tmp_path, path)


def _fsync_dir(path: str) -> None:
    """Persist a rename by syncing its directory (POSIX only; a no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(url: str, data: bytes) -> None:
    """Write `data` to `url` atomically (temp file in the same directory, then rename).

    Args:
        url: destination file URL.
        data: the complete file content.
    """
    with AtomicFile(url) as f:
        f.write(data)


def _modified_s(info: dict) -> float | None:
    """Modification time (epoch seconds) from an fsspec `info` dict, None if it has none."""
    for key in ("mtime", "LastModified", "created", "updated"):
        value = info.get(key)
        if value is None:
            continue
        return value.timestamp() if hasattr(value, "timestamp") else float(value)
    return None


def _is_stale(info: dict, older_than_s: float, now: float) -> bool:
    if older_than_s <= 0:
        return True
    modified = _modified_s(info)
    return modified is None or modified <= now - older_than_s


def remove_temp_files(dir_url: str, recursive: bool = False, older_than_s: float = 0.0) -> list[str]:
    """Delete temp files of interrupted atomic writes under `dir_url`; return their paths.

    Only call this when no other writer is active in the directory (or give `older_than_s`):
    a concurrent writer's in-flight temp file looks the same as a crashed one.

    Args:
        dir_url: the directory to clean; missing directories are ignored.
        recursive: clean every subdirectory too (e.g. embeddings/, run directories).
        older_than_s: only remove temp files not modified for this many seconds (0 = all).
    """
    fs, root = open_fs(dir_url)
    fs.invalidate_cache(root)  # other processes may have written since the last listing
    if not fs.exists(root):
        return []
    if recursive:
        entries = fs.find(root, detail=True)
    else:
        entries = {e["name"]: e for e in fs.ls(root, detail=True) if e.get("type") != "directory"}
    now = time.time()
    removed = []
    for path, info in sorted(entries.items()):
        if is_temp_name(posixpath.basename(path)) and _is_stale(info, older_than_s, now):
            fs.rm(path)
            removed.append(path)
    if removed:
        logger.info("removed %d stale temp file(s) under %s", len(removed), dir_url)
    return removed


def _unfinished_uploads(fs: fsspec.AbstractFileSystem, bucket: str, prefix: str) -> list[dict]:
    """Every unfinished multipart upload under `prefix` in `bucket` (all pages)."""
    uploads: list[dict] = []
    marker: dict = {}
    while True:
        page = fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix, **marker)
        uploads += page.get("Uploads", [])
        if not page.get("IsTruncated"):
            return uploads
        marker = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}


def abort_unfinished_uploads(dir_url: str, older_than_s: float = 0.0,
                             recursive: bool = True) -> list[str]:
    """Abort multipart uploads left under `dir_url` by killed writers; return their keys.

    A no-op on filesystems without multipart uploads (local disk, memory://). The same caveat as
    `remove_temp_files`: an upload still in progress looks like an abandoned one, so pass
    `older_than_s` where another writer may be active.

    Args:
        dir_url: the directory (key prefix) to clean, recursively.
        older_than_s: only abort uploads started at least this many seconds ago (0 = all).
        recursive: also under subdirectories; False = keys directly under `dir_url` only.
    """
    fs, root = open_fs(dir_url)
    if not (is_object_store(fs) and hasattr(fs, "call_s3")):
        return []
    check_bucket(dir_url)
    bucket = bucket_of(root)
    prefix = root.lstrip("/")[len(bucket):].strip("/")
    prefix = prefix + "/" if prefix else ""
    now, aborted = time.time(), []
    for upload in _unfinished_uploads(fs, bucket, prefix):
        if not recursive and "/" in upload["Key"][len(prefix):]:
            continue
        started = upload.get("Initiated")
        if older_than_s > 0 and started is not None and started.timestamp() > now - older_than_s:
            continue
        fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=upload["Key"],
                   UploadId=upload["UploadId"])
        aborted.append(f"{bucket}/{upload['Key']}")
    if aborted:
        logger.info("aborted %d unfinished upload(s) under %s", len(aborted), dir_url)
    return aborted


def clean_interrupted_writes(dir_url: str, older_than_s: float = 0.0) -> list[str]:
    """Remove what killed writers left anywhere under `dir_url`: temp files and unfinished uploads.

    Args:
        dir_url: the directory to clean, recursively (dataset root, run root, registry).
        older_than_s: leave anything younger alone (another writer may still be at work).
    """
    return (remove_temp_files(dir_url, recursive=True, older_than_s=older_than_s)
            + abort_unfinished_uploads(dir_url, older_than_s))
