"""Where a flow's shard tasks run: threads in the flow's process, or a Dask cluster.

Shards are the unit of distribution. `threads` keeps today's bounded thread pool; `dask` hands
each shard to prefect-dask's DaskTaskRunner, on a LocalCluster of worker processes by default
or on an existing scheduler (`tcp://host:8786`) shared by several machines.
"""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import TaskRunner

from mm2latent_core.errors import ConfigError

TaskRunnerName = Literal["threads", "dask"]
TASK_RUNNERS: tuple[str, ...] = ("threads", "dask")
_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://")


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
