"""synth-data on Dask: worker processes write the same bytes as threads, and survive kill -9."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")

N, PER_SHARD = 12, 4
SHARDS = N // PER_SHARD


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every shard tar and parquet (stats files hold timings, so they differ)."""
    files = sorted(root.glob("shard-*.tar")) + sorted(root.glob("shard-*.parquet"))
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def thread_run(tmp_path_factory) -> dict[str, str]:
    """The reference: the same dataset written by the thread runner."""
    from mm2latent.synth.params import parse_params
    from mm2latent.synth.run import plan, run_shard

    out = tmp_path_factory.mktemp("threads")
    params = parse_params(preset="tiny", n_samples=N, samples_per_shard=PER_SHARD, out=str(out))
    for shard in plan(params):
        run_shard(params, shard)
    digests = _digests(out)
    assert len(digests) == 2 * SHARDS
    return digests


def _synth(out: Path, max_workers: int = 1, **kw):
    from flows.synth_data import synth_data
    from mm2latent.synth.params import parse_params

    params = parse_params(preset="tiny", n_samples=N, samples_per_shard=PER_SHARD, out=str(out),
                          max_workers=max_workers)
    return synth_data(params, task_runner="dask", **kw)


def test_local_cluster_of_two_processes_matches_threads(prefect_harness, thread_run, tmp_path):
    summary = _synth(tmp_path / "dask", max_workers=2)  # the default: a LocalCluster
    assert summary.ok == N
    assert _digests(tmp_path / "dask") == thread_run


def _worker_pids(client) -> dict[str, int]:
    return client.run(os.getpid)


def _builds(client) -> dict[str, int]:
    """Per worker: how many times the synth networks were built in that process."""
    def misses() -> int:
        from tasks.synth import _models
        return _models.cache_info().misses
    return client.run(misses)


def test_killed_worker_leaves_a_dataset_a_rerun_completes(prefect_harness, thread_run, tmp_path):
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as client:
        address, victim = cluster.scheduler_address, next(iter(_worker_pids(client).values()))
        outcome = {}

        def first_run():
            try:
                outcome["summary"] = _synth(out, dask_address=address)
            except Exception as e:  # the killed shard may fail the first run
                outcome["error"] = e

        runner = threading.Thread(target=first_run)
        runner.start()
        deadline = time.monotonic() + 120
        while not list(out.glob("shard-*.stats.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)  # mid-run: a shard is done, others are in flight
        runner.join(timeout=180)
        assert not runner.is_alive()
        client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed process

        summary = _synth(out, dask_address=address)  # the rerun redoes what the kill broke
        assert summary.ok == N
        assert _digests(out) == thread_run
        # Each worker process built the networks at most once, however many shards it ran.
        assert all(n <= 1 for n in _builds(client).values())
