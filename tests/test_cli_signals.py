"""Ctrl-C, SIGTERM and kill -9 of a real `mm2latent synth-data` process (Linux: uses /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mm2latent.dataset_report import verify_dataset

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

CLI = [sys.executable, "-c", "from flows.cli import main; main()"]
LIMIT_S = 240  # generous: the CLI imports torch and starts a Prefect server on a loaded machine


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """A synth-data run far longer than the test, in its own process group like a shell job."""
    out = tmp_path / "ds"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), PREFECT_API_URL="",
               PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=str(LIMIT_S))
    proc = subprocess.Popen([*CLI, "synth-data", "--n", "4096", "--samples-per-shard", "8",
                             "--batch-size", "2", "--modalities", "mask", "--out", str(out)],
                            env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + LIMIT_S
    while not (out / "dataset.json").exists():  # written by the flow: the server is up by now
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"synth-data did not start: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)
    return proc, out


def _clean_up(proc: subprocess.Popen, pids: list[int]) -> None:
    """Whatever the outcome, leave no process of this test behind (its own children only)."""
    for pid in [proc.pid, *pids]:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=30)


def _gone_soon(pids: list[int], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(_alive(p) for p in pids)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_after_the_batch_commits_nothing_half_and_leaves_no_process(
        tmp_path, signum, code):
    proc, out = _start(tmp_path)
    server = _children(proc.pid)
    try:
        assert server, "the temporary Prefect server should be a child of the CLI"
        os.killpg(proc.pid, signum)  # like a terminal's Ctrl-C: the whole foreground group
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == code, stderr[-2000:]
        assert "Resume: re-run the same command" in stderr
        assert _gone_soon(server)
    finally:
        _clean_up(proc, server)
    shards = verify_dataset(str(out))  # every shard that looks complete is intact
    assert len(shards) < 4096 // 8
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temp file left


def test_kill_9_of_the_cli_takes_the_temporary_server_with_it(tmp_path):
    proc, _ = _start(tmp_path)
    server = _children(proc.pid)
    try:
        assert server
        proc.kill()
        proc.communicate(timeout=60)
        assert _gone_soon(server), "the temporary Prefect server outlived the CLI"
    finally:
        _clean_up(proc, server)
