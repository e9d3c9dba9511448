"""A real Prefect server: deploy prefect.yaml, run synth-data/tiny as the README says, and let
the deployment triggers start retrain/tiny and then benchmark/tiny. Every process started here
is stopped by its PID.

The deployments are registered from a copy of prefect.yaml whose parameters are shrunk (8
samples, 1 epoch, 2 benchmark pairs) and point into tmp_path: the only test-only override;
triggers, pool and entrypoints are the project's own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from mm2latent.training.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL=api_url, PREFECT_UI_ENABLED="false",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_WORKER_QUERY_SECONDS="1",
               PREFECT_LOGGING_LEVEL="WARNING",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("MM2LATENT_PROJECT_DIR", None)  # the deployments must not need it
    return env


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group this test started (its PID), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _wait_healthy(api_url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, "prefect server exited during start-up"
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("prefect server did not become healthy")


def _flow_runs(api_url: str, flow_name: str) -> list[dict]:
    body = {"flows": {"name": {"any_": [flow_name]}}}
    return httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=10).json()


def _shrunk_prefect_yaml(tmp_path: Path) -> Path:
    """prefect.yaml with tiny sizes and outputs under tmp_path (nothing else changed)."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    data, runs = str(tmp_path / "data"), str(tmp_path / "runs")
    fixture = tmp_path / "fixture"
    small = {("synth-data", "tiny"): {"params": {"preset": "tiny", "n_samples": 8,
                                                 "samples_per_shard": 4, "out": data}},
             ("retrain", "tiny"): {"dataset": data, "out": runs, "ae_epochs": 1,
                                   "mapping_epochs": 1, "batch_size": 4},
             ("benchmark", "tiny"): {
                 "fixture": str(fixture), "celebamask": str(fixture / "CelebAMask-HQ"),
                 "captions": str(fixture / "CelebA-Dialog" / "captions_hq.json"),
                 "reference_images": str(fixture / "CelebAMask-HQ" / "CelebA-HQ-img"),
                 "models": runs, "out": str(tmp_path / "benchmark"), "n_pairs": 2}}
    for deployment in config["deployments"]:
        flow_name = {"flows/synth_data.py:synth_data": "synth-data",
                     "flows/train.py:retrain": "retrain",
                     "flows/benchmark.py:benchmark": "benchmark"}.get(deployment["entrypoint"])
        deployment["parameters"].update(small.get((flow_name, deployment["name"]), {}))
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _wait_for_run(api_url: str, flow_name: str, logs: Path, timeout: float = 300) -> None:
    """Wait until the (triggered, top-level) run of `flow_name` ends; assert it completed."""
    deadline, state = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        runs = [r for r in _flow_runs(api_url, flow_name) if r["parent_task_run_id"] is None]
        state = runs[0]["state"]["type"] if runs else None
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        time.sleep(2)
    worker_log = (logs / "worker.log").read_text()
    assert state == "COMPLETED", f"{flow_name} run: {state}\n{worker_log[-3000:]}"


def _run(cmd: list[str], env: dict, cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


def test_server_deploy_run_and_trigger_chain(tmp_path):
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _env(tmp_path / "prefect-home", api_url)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    try:
        server = subprocess.Popen([*PREFECT, "server", "start", "--host", "127.0.0.1",
                                   "--port", str(port)], env=env, cwd=tmp_path,
                                  stdout=open(logs / "server.log", "w"), stderr=subprocess.STDOUT,
                                  start_new_session=True)
        procs.append(server)
        _wait_healthy(api_url, server)
        _run([*PREFECT, "work-pool", "create", "mm2latent", "--type", "process"], env, ROOT)
        _run([*PREFECT, "--no-prompt", "deploy", "--all", "--prefect-file",
              str(_shrunk_prefect_yaml(tmp_path))], env, ROOT)
        worker_dir = tmp_path / "elsewhere"  # the worker need not start in the project
        worker_dir.mkdir()
        procs.append(subprocess.Popen([*PREFECT, "worker", "start", "--pool", "mm2latent"],
                                      env=env, cwd=worker_dir, stdout=open(logs / "worker.log", "w"),
                                      stderr=subprocess.STDOUT, start_new_session=True))

        out = _run([*PREFECT, "deployment", "run", "synth-data/tiny", "--watch",
                    "--watch-timeout", "240"], env, tmp_path, timeout=300)
        assert "Completed" in out, out
        data = tmp_path / "data"
        assert sorted(p.name for p in data.glob("shard-*.stats.json")) == [
            "shard-000000.stats.json", "shard-000001.stats.json"]

        # The completed synth-data/tiny run fires the trigger: retrain/tiny trains everything.
        _wait_for_run(api_url, "retrain", logs)
        registry = ModelRegistry(str(tmp_path / "runs" / "registry"))
        for name in ("mask-ae", "sketch-ae", "mapping-mask", "mapping-sketch", "mapping-flame"):
            assert registry.latest(name) is not None, name
        # ... and the completed retrain/tiny run fires the next one: benchmark/tiny.
        _wait_for_run(api_url, "benchmark", logs)
        summary = json.loads((tmp_path / "benchmark" / "summary.json").read_text())
        assert [m["model"] for m in summary["models"]] == ["mapping-mask-v1"]
    finally:
        for proc in reversed(procs):
            _stop(proc)
