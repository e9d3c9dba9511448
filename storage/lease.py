"""An owner lease on a dataset directory, so that two synth-data runs never write one dataset.

A run holds `<dataset>/.owner-lease.json` ({owner id, host, pid, started, heartbeat, ttl_s})
while it writes. A second run that finds a live lease refuses at once (DatasetError naming the
holder). A lease whose holder is gone is taken over, so a crashed run never blocks the dataset
for good: on the same host the holder is gone when its process no longer exists; across hosts,
when its heartbeat (refreshed every ttl_s / 3 by a thread of the holder) is older than ttl_s.

Creation is atomic: local files are published with a hard link, which fails if the name exists,
so exactly one of two racing runs gets the lease, and it is never seen half-written. On other
fsspec filesystems the lease is created with mode "xb" where the filesystem supports exclusive
creation (memory://; S3 through s3fs's conditional writes); elsewhere two runs starting in
the same instant could both proceed, and taking over a stale lease there reads it and then
deletes it (locally the stale lease is first renamed aside, so only one run can break it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from fsspec.implementations.local import LocalFileSystem

from mm2latent.errors import DatasetError
from storage.atomic import atomic_write_bytes
from storage.exclusive import create_exclusive
from storage.fs import join, open_fs

logger = logging.getLogger(__name__)

LEASE_NAME = ".owner-lease.json"  # dot-prefixed: dataset readers never look at it
DEFAULT_TTL_S = 120.0  # heartbeat age after which a holder on another host counts as gone


@dataclass(frozen=True)
class LeaseInfo:
    """Who holds a dataset."""

    owner: str        # random id of the holding run
    purpose: str      # what the holder does, e.g. "synth-data"
    host: str         # socket.gethostname() of the holder
    pid: int          # process id of the holder on `host`
    started: float    # unix time the lease was taken
    heartbeat: float  # unix time of the holder's last refresh
    ttl_s: float      # heartbeat age after which the lease may be taken over

    def is_stale(self, now: float) -> bool:
        """True if the holder is gone: its process died (same host) or its heartbeat expired."""
        if self.host == socket.gethostname() and not _pid_alive(self.pid):
            return True
        return now - self.heartbeat > self.ttl_s

    def describe(self, now: float) -> str:
        """One line for messages."""
        return (f"{self.purpose} run {self.owner[:8]} (pid {self.pid} on {self.host}, started "
                f"{now - self.started:.0f} s ago, last heartbeat {now - self.heartbeat:.0f} s ago)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def read_lease(dataset_url: str) -> LeaseInfo | None:
    """The current lease of a dataset, or None (no lease, or an unreadable one)."""
    fs, path = open_fs(join(dataset_url, LEASE_NAME))
    try:
        return LeaseInfo(**json.loads(fs.cat_file(path)))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:  # torn or foreign content: treat as absent
        logger.warning("%s: unreadable lease (%s); taking it over", path, e)
        return None


def _create_exclusive(url: str, data: bytes) -> bool:
    """Create `url` holding `data` unless it exists; True if this call created it."""
    fs, path = open_fs(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        return create_exclusive(url, data)  # hard link: atomic, and fails if the name exists
    try:
        with fs.open(path, "xb") as f:
            f.write(data)
        return True
    except FileExistsError:
        return False


def _remove_if_owned(dataset_url: str, owner: str | None) -> None:
    """Delete the lease if `owner` holds it (None: if it is unreadable)."""
    fs, path = open_fs(join(dataset_url, LEASE_NAME))
    if not isinstance(fs, LocalFileSystem):  # read, then delete: see the module docstring
        current = read_lease(dataset_url)
        if (current.owner if current else None) == owner:
            fs.rm(path)
        return
    # Move it aside first (atomic: of two runs breaking the same lease only one moves it),
    # then check whose it was; a lease that turns out to be another run's goes back.
    aside = f"{path}.{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    try:
        with open(aside, "rb") as f:
            moved = LeaseInfo(**json.loads(f.read())).owner
    except (ValueError, TypeError):
        moved = None
    if moved != owner:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    os.unlink(aside)


def refuse_if_held(dataset_url: str) -> None:
    """DatasetError naming the holder if a live run holds the dataset's lease (a quick check
    before work starts; only acquire_lease is atomic)."""
    held, now = read_lease(dataset_url), time.time()
    if held is not None and not held.is_stale(now):
        raise DatasetError(
            f"{dataset_url} is being written by another {held.describe(now)}. Two runs into "
            "one dataset would corrupt it. Fix: wait for that run to finish and re-run this "
            "command (it resumes), or pass another --out. A crashed run's lease is taken over "
            f"automatically once its process is gone (same host) or its heartbeat is over "
            f"{held.ttl_s:.0f} s old.")


def acquire_lease(dataset_url: str, purpose: str, ttl_s: float = DEFAULT_TTL_S) -> LeaseInfo:
    """Take the dataset's lease, taking over a stale one; DatasetError if a live run holds it."""
    url = join(dataset_url, LEASE_NAME)
    for _ in range(3):  # a takeover can race with another run's; retry a few times
        now = time.time()
        mine = LeaseInfo(uuid.uuid4().hex, purpose, socket.gethostname(), os.getpid(), now, now, ttl_s)
        if _create_exclusive(url, json.dumps(asdict(mine)).encode()):
            return mine
        refuse_if_held(dataset_url)
        held = read_lease(dataset_url)
        logger.warning("%s: taking over the lease of %s", dataset_url,
                       held.describe(now) if held else "an unreadable lease")
        _remove_if_owned(dataset_url, held.owner if held else None)
    raise DatasetError(f"{dataset_url}: could not take the dataset lease (other runs keep "
                       "taking it over). Fix: make sure only one run writes this dataset.")


def _heartbeat(dataset_url: str, lease: LeaseInfo, stop: threading.Event) -> None:
    """Refresh the lease's heartbeat every ttl_s / 3 until `stop` is set."""
    while not stop.wait(lease.ttl_s / 3):
        current = read_lease(dataset_url)
        if current is None or current.owner != lease.owner:
            logger.error("%s: this run's lease was taken over; stop this run", dataset_url)
            return
        fresh = LeaseInfo(**(asdict(lease) | {"heartbeat": time.time()}))
        try:
            atomic_write_bytes(join(dataset_url, LEASE_NAME), json.dumps(asdict(fresh)).encode())
        except OSError as e:  # a missed beat is harmless unless ttl_s passes; try again
            logger.warning("%s: could not refresh the lease heartbeat (%s)", dataset_url, e)


@contextmanager
def dataset_lease(dataset_url: str, purpose: str, ttl_s: float = DEFAULT_TTL_S) -> Iterator[LeaseInfo]:
    """Hold the dataset's lease (with a heartbeat thread) for the duration of the block.

    Args:
        dataset_url: dataset root (local path or fsspec URL).
        purpose: what the holder does, shown to a refused run (e.g. "synth-data").
        ttl_s: heartbeat age after which another host may take the lease over.
    """
    fs, root = open_fs(dataset_url)
    fresh_dir = not fs.exists(root)  # a run that fails before writing leaves no directory
    lease = acquire_lease(dataset_url, purpose, ttl_s)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(dataset_url, lease, stop), daemon=True,
                            name="dataset-lease-heartbeat")
    beat.start()
    try:
        yield lease
    finally:
        stop.set()
        beat.join()
        _remove_if_owned(dataset_url, lease.owner)
        if fresh_dir and fs.exists(root) and not fs.ls(root, detail=False):
            fs.rmdir(root)
