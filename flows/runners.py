"""Where a flow's shard tasks run: threads in the flow's process, or a Dask cluster.

Shards are the unit of distribution. `threads` keeps today's bounded thread pool; `dask` hands
each shard to prefect-dask's DaskTaskRunner, on a LocalCluster of worker processes by default
or on an existing scheduler (`tcp://host:8786`) shared by several machines.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

from prefect.task_runners import TaskRunner

from mm2latent_core.errors import ConfigError

TaskRunnerName = Literal["threads", "dask"]
TASK_RUNNERS: tuple[str, ...] = ("threads", "dask")
_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")
_DASK_DEFAULT_PORT = 8786  # what `dask scheduler` listens on when given no --port
# Long enough for a scheduler on another machine of the cluster, short enough that a wrong
# address is refused at once rather than after distributed's 30 s connect timeout.
_CONNECT_TIMEOUT_S = 5.0


def check_runner_choice(task_runner: str, dask_address: str | None) -> None:
    """ConfigError for an unknown runner name or a scheduler address Dask cannot dial."""
    if task_runner not in TASK_RUNNERS:
        raise ConfigError(f"task_runner {task_runner!r} is unknown; choose one of "
                          f"{', '.join(TASK_RUNNERS)}.")
    if dask_address is None:
        return
    if task_runner != "dask":
        raise ConfigError(f"dask_address {dask_address!r} needs task_runner='dask' "
                          "(--task-runner dask).")
    if not dask_address.startswith(_SCHEMES):
        raise ConfigError(f"dask_address {dask_address!r} is not a Dask scheduler address; "
                          "give it as tcp://HOST:PORT (the address `dask scheduler` prints).")
    check_scheduler_reachable(dask_address)


def check_scheduler_reachable(dask_address: str) -> None:
    """ConfigError naming the address when nothing accepts a TCP connection there.

    Only tcp:// and tls:// addresses are dialled (the others have no host and port to try).
    """
    parts = urlsplit(dask_address)
    if parts.scheme not in ("tcp", "tls"):
        return
    try:
        host, port = parts.hostname, parts.port or _DASK_DEFAULT_PORT
    except ValueError as e:  # a port that is not a number
        raise ConfigError(f"dask_address {dask_address!r} has a bad port ({e}); give it as "
                          "tcp://HOST:PORT (the address `dask scheduler` prints).") from None
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            return
    except OSError as e:
        reason = e.strerror or type(e).__name__
    raise ConfigError(f"no Dask scheduler answers at {dask_address} ({reason}). Fix: start one "
                      "with `dask scheduler` and pass the address it prints, or drop "
                      "--dask-address to run on a LocalCluster.")


def dask_task_runner(dask_address: str | None, n_workers: int) -> TaskRunner:
    """A DaskTaskRunner on `dask_address`, or on a LocalCluster of `n_workers` processes.

    One thread per worker process: a shard already keeps a core busy through torch's
    intra-op threads (Dask's nanny pins OMP_NUM_THREADS=1 per worker), and each worker then
    holds one preset's networks, built on its first shard and reused for the rest.
    """
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as e:
        raise ConfigError("task_runner='dask' needs prefect-dask. Fix: pip install "
                          "'mm2latent[dask]' (or use --task-runner threads).") from e
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": ":0"})


class ProcessLocal:
    """A callback (e.g. a progress bar's) that stays in the process that made it.

    Prefect ships a flow run's context, the flow's parameters included, to every Dask worker
    that runs one of its tasks. A terminal callback closes over locks and open files, which
    cannot be pickled and mean nothing in another process, so a pickled ProcessLocal becomes
    None on the other side; in this process it is called like the callback it wraps.
    """

    def __init__(self, callback: Callable[..., object]) -> None:
        self.callback = callback

    def __call__(self, *args: object, **kwargs: object) -> object:
        return self.callback(*args, **kwargs)

    def __reduce__(self) -> tuple[Callable[[], None], tuple]:
        return (_dropped, ())


def _dropped() -> None:
    """What a ProcessLocal unpickles to in another process: no callback."""
    return None
