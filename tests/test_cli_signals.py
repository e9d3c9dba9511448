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

CLI = [sys.executable, "-c", "from flows.main import main; main()"]
LIMIT_S = 600  # generous: the CLI imports torch and starts a Prefect server on a loaded machine


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


def _start(tmp_path: Path, home: Path) -> tuple[subprocess.Popen, Path]:
    """A synth-data run far longer than the test, in its own process group like a shell job."""
    out = tmp_path / "ds"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), PREFECT_API_URL="",
               PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
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
        tmp_path, prefect_home, signum, code):
    proc, out = _start(tmp_path, prefect_home)
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


def test_kill_9_of_the_cli_takes_the_temporary_server_with_it(tmp_path, prefect_home):
    proc, _ = _start(tmp_path, prefect_home)
    server = _children(proc.pid)
    try:
        assert server
        proc.kill()
        proc.communicate(timeout=60)
        assert _gone_soon(server), "the temporary Prefect server outlived the CLI"
    finally:
        _clean_up(proc, server)


@pytest.fixture(scope="module")
def flame_models(tmp_path_factory) -> dict[str, Path]:
    """A vectors dataset and a flame MappingNet trained on it for one epoch (tiny preset)."""
    import numpy as np

    from mm2latent.fabricate.learnable import write_learnable_dataset
    from mm2latent.presets import get_preset
    from mm2latent.training.config import MappingTrainCfg
    from mm2latent.training.mapping import mapping_net_cfg
    from mm2latent.training.pipeline import mapping_run
    from mm2latent.training.registry import default_registry_url

    root = tmp_path_factory.mktemp("signals")
    data, runs = root / "data", root / "runs"
    write_learnable_dataset(str(data), n_shards=1, per_shard=16,
                            dims={"w": 512, "flame": 159, "farl": 512}, members=())
    mapping_run(str(data), str(runs), default_registry_url(str(runs)),
                mapping_net_cfg(get_preset("tiny").mapping, "flame"),
                MappingTrainCfg(modality="flame", epochs=1, batch_size=8, val_fraction=0.0))
    np.save(root / "own.npy", np.random.default_rng(0).standard_normal(159).astype(np.float32))
    return {"data": data, "runs": runs, "own": root / "own.npy"}


def _cli(args: list[str], home: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), PREFECT_API_URL="",
               PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="INFO")
    return subprocess.Popen([*CLI, *args], env=env, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(proc: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the command did not get going: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_generate_from_rows_unwinds_on_a_signal(flame_models, tmp_path, prefect_home, signum, code):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(f'{{"text": "a face", "flame": "{flame_models["own"]}"}}\n' * 4000)
    out = tmp_path / "gen"
    proc = _cli(["generate", "--from", str(rows), "--models", str(flame_models["runs"]),
                 "--out", str(out)], prefect_home)
    try:
        _wait_for(proc, lambda: (out / "dataset.json").exists())  # planned: generating now
        os.killpg(proc.pid, signum)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == code, stderr[-2000:]  # not -15: it unwound
        assert "Traceback" not in stderr
    finally:
        _clean_up(proc, [])


def test_train_mapping_stops_after_an_epoch_on_sigterm_and_leaves_no_server(flame_models,
                                                                             tmp_path, prefect_home):
    out = tmp_path / "runs"
    proc = _cli(["train", "mapping", "--dataset", str(flame_models["data"]), "--out", str(out),
                 "--modality", "flame", "--epochs", "100000", "--batch-size", "8",
                 "--val-fraction", "0"], prefect_home)
    server: list[int] = []
    try:
        _wait_for(proc, lambda: any(out.glob("**/ckpt-*.pt")))  # the flow is training
        server = _children(proc.pid)
        assert server, "the temporary Prefect server should be a child of the CLI"
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143, stderr[-2000:]
        assert "Traceback" not in stderr
        assert _gone_soon(server)
    finally:
        _clean_up(proc, server)


def test_a_refused_resume_prints_one_line(flame_models, tmp_path, prefect_home):
    from mm2latent.training.config import MappingTrainCfg
    from mm2latent.training.mapping import mapping_net_cfg
    from mm2latent.presets import get_preset
    from mm2latent.training.pipeline import mapping_run
    from mm2latent.training.registry import default_registry_url

    out = tmp_path / "runs"

    def stop_after_first_epoch(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # an interrupted run at lr 0.01
        mapping_run(str(flame_models["data"]), str(out), default_registry_url(str(out)),
                    mapping_net_cfg(get_preset("tiny").mapping, "flame"),
                    MappingTrainCfg(modality="flame", epochs=3, batch_size=8, lr=0.01,
                                    val_fraction=0.0), on_progress=stop_after_first_epoch)
    proc = _cli(["train", "mapping", "--dataset", str(flame_models["data"]), "--out", str(out),
                 "--modality", "flame", "--epochs", "3", "--batch-size", "8", "--lr", "0.05",
                 "--val-fraction", "0", "--resume"], prefect_home)
    stdout, stderr = proc.communicate(timeout=LIMIT_S)
    assert proc.returncode == 2, stderr[-3000:]
    output = stdout + stderr
    assert "Traceback" not in output
    assert output.count("cannot resume") == 1, output
    assert [line for line in stderr.splitlines() if "cannot resume" in line] == [
        line for line in stderr.splitlines() if line.startswith("error:")]
    assert "lr: 0.01 -> 0.05" in output
