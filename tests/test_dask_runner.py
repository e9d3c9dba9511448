"""synth-data on Dask: worker processes write the same bytes as threads, and survive kill -9."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
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


# --- The CLI in a subprocess, as a user runs it (the in-process calls above never pickled the
# progress bar's callback, so they passed while every `--task-runner dask` command failed).

MM2LATENT = str(Path(sys.executable).parent / "mm2latent")


@pytest.fixture(scope="module")
def api_env() -> dict[str, str]:
    """The environment for CLI subprocesses: as a user's, each command starts (and stops) its
    own temporary Prefect server."""
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}


def _cli(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([MM2LATENT, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _synth_args(out: Path) -> list[str]:
    return ["synth-data", "--preset", "tiny", "--n", str(N), "--samples-per-shard",
            str(PER_SHARD), "--task-runner", "dask", "--out", str(out)]


@contextlib.contextmanager
def _loopback_scheduler(tmp_path: Path) -> Iterator[str]:
    """`dask scheduler` and one `dask worker`, as separate processes on 127.0.0.1 only, as the
    README starts them; yields the scheduler's address; both stopped by process group."""
    bin_dir, scheduler_file = Path(sys.executable).parent, tmp_path / "scheduler.json"
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", "127.0.0.1:0",
                               "--scheduler-file", str(scheduler_file)],
                              start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        with distributed.Client(scheduler_file=str(scheduler_file), timeout=120) as client:
            procs.append(subprocess.Popen(
                [str(bin_dir / "dask"), "worker", "--scheduler-file", str(scheduler_file),
                 "--host", "127.0.0.1", "--nthreads", "1", "--dashboard-address", "127.0.0.1:0"],
                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            client.wait_for_workers(1, timeout=120)
            yield client.scheduler.address
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def test_cli_on_a_local_cluster_matches_threads(api_env, thread_run, tmp_path):
    done = _cli(api_env, *_synth_args(tmp_path / "d"), "--max-workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{N} ok, 0 failed, {SHARDS} shards" in done.stdout + done.stderr
    assert _digests(tmp_path / "d") == thread_run


def test_cli_on_a_separately_started_scheduler(api_env, thread_run, tmp_path):
    with _loopback_scheduler(tmp_path) as address:
        done = _cli(api_env, *_synth_args(tmp_path / "d"), "--dask-address", address)
        assert done.returncode == 0, done.stderr[-3000:]
        assert _digests(tmp_path / "d") == thread_run

        chain = _cli(api_env, "pipeline", "--preset", "tiny", "--n", str(N),
                     "--samples-per-shard", str(PER_SHARD), "--data", str(tmp_path / "p"),
                     "--runs", str(tmp_path / "runs"), "--mappings", "flame",
                     "--mapping-epochs", "1", "--benchmark-pairs", "0",
                     "--task-runner", "dask", "--dask-address", address)
        assert chain.returncode == 0, chain.stderr[-3000:]
        assert _digests(tmp_path / "p") == thread_run


def test_cli_refuses_an_unreachable_scheduler_at_once(tmp_path):
    # Port 1 on loopback: nothing listens, so the connection is refused; the CLI says so before
    # starting Prefect (no PREFECT_API_URL here), instead of a traceback after 30 s.
    address = "tcp://127.0.0.1:1"
    for args in (_synth_args(tmp_path / "d"), ["pipeline", "--preset", "tiny", "--data",
                                               str(tmp_path / "p"), "--task-runner", "dask"]):
        done = _cli(dict(os.environ), *args, "--dask-address", address)
        assert done.returncode == 2, done.stderr[-3000:]
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and address in lines[0] and "dask scheduler" in lines[0], lines
        assert "Traceback" not in done.stderr and "temporary server" not in done.stderr
        assert not (tmp_path / "d").exists() and not (tmp_path / "p").exists()
