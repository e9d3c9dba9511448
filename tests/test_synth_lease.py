"""Two synth-data runs into one --out: the second refuses at once; a crashed run never blocks it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from flows.cli import app
from mm2latent_core.errors import DatasetError
from storage.lease import LEASE_NAME, LeaseInfo, acquire_lease, dataset_lease, read_lease

_HOLDER = """
import sys
from storage.lease import dataset_lease
with dataset_lease(sys.argv[1], purpose="synth-data", ttl_s=float(sys.argv[2])):
    print("held", flush=True)
    sys.stdin.read()  # hold until the test closes stdin (or kills this process)
"""


def _start_holder(out: str, ttl_s: float = 60.0) -> subprocess.Popen:
    """A second real process that takes the dataset's lease and holds it."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, out, str(ttl_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONPATH": os.getcwd()})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_refuses_at_once_while_another_process_writes(prefect_harness, tmp_path):
    out = str(tmp_path / "ds")
    holder = _start_holder(out)
    try:
        started = time.monotonic()
        refused = CliRunner().invoke(app, ["synth-data", "--n", "2", "--out", out])
        assert refused.exit_code == 2, refused.output
        assert "being written by another synth-data run" in refused.output
        assert f"pid {holder.pid}" in refused.output and "Traceback" not in refused.output
        assert time.monotonic() - started < 60  # refused, not queued behind the holder
        assert sorted(os.listdir(out)) == [LEASE_NAME]  # nothing of the dataset was written
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    assert read_lease(out) is None  # released on a normal exit
    made = CliRunner().invoke(app, ["synth-data", "--n", "2", "--out", out])
    assert made.exit_code == 0, made.output
    assert read_lease(out) is None


def test_a_killed_holder_does_not_block_the_dataset(prefect_harness, tmp_path):
    out = str(tmp_path / "ds")
    holder = _start_holder(out)
    holder.send_signal(signal.SIGKILL)  # a crash: no cleanup runs
    holder.wait(timeout=30)
    assert read_lease(out).pid == holder.pid  # left behind...
    made = CliRunner().invoke(app, ["synth-data", "--n", "2", "--out", out])
    assert made.exit_code == 0, made.output  # ...and taken over: its process is gone
    assert read_lease(out) is None


def _foreign_lease(out: str, heartbeat_age_s: float) -> LeaseInfo:
    now = time.time()
    lease = LeaseInfo("f" * 32, "synth-data", socket.gethostname() + "-other", 1, now - 500,
                      now - heartbeat_age_s, ttl_s=60.0)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, LEASE_NAME), "w") as f:
        json.dump(asdict(lease), f)
    return lease


def test_lease_of_another_host_expires_with_its_heartbeat(tmp_path):
    out = str(tmp_path / "ds")
    _foreign_lease(out, heartbeat_age_s=10)
    with pytest.raises(DatasetError, match="being written by another synth-data run"):
        acquire_lease(out, "synth-data")
    _foreign_lease(out, heartbeat_age_s=61)
    mine = acquire_lease(out, "synth-data")
    assert read_lease(out) == mine


def test_heartbeat_keeps_a_long_run_alive_and_memory_urls_work(mem_url):
    with dataset_lease(mem_url, "synth-data", ttl_s=0.3) as lease:
        time.sleep(0.5)
        assert read_lease(mem_url).heartbeat > lease.heartbeat  # refreshed
        with pytest.raises(DatasetError, match=f"pid {os.getpid()}"):
            acquire_lease(mem_url, "synth-data")
    assert read_lease(mem_url) is None
