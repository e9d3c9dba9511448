"""`train ... --resume` with nothing to resume is refused (one line, exit 2, nothing written);
with an interrupted run it continues that run and starts the command's runs that never began."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mm2latent.fabricate.datasets import write_dataset

CLI = [sys.executable, "-c", "from flows.main import main; main()"]
LIMIT_S = 540  # the CLI imports torch and starts a Prefect server, on a machine maybe loaded


@pytest.fixture
def dataset(tmp_path) -> Path:
    write_dataset(str(tmp_path / "ds"), n_shards=1, per_shard=4)
    return tmp_path / "ds"


def _cli(tmp_path: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), PREFECT_API_URL="",
               PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=str(LIMIT_S))
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True,
                          timeout=LIMIT_S, cwd=tmp_path)


@pytest.mark.parametrize("command", [["autoencoders", "--modalities", "mask"],
                                     ["mapping", "--modality", "flame"]])
def test_resume_with_nothing_to_resume_is_refused_naming_the_run_and_the_fix(
        dataset, tmp_path, prefect_home, command):
    out = tmp_path / "runs"
    result = _cli(tmp_path, prefect_home, "train", *command, "--dataset", str(dataset), "--out", str(out),
                  "--epochs", "1", "--batch-size", "2", "--resume")
    assert result.returncode == 2, result.stdout + result.stderr
    # The CLI's one line goes to stderr, like every user error; stdout carries no second copy.
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert errors[0].startswith("error: nothing to resume") and f"{out}/" in errors[0]
    assert "holds no checkpoint" in errors[0]
    assert errors[0].endswith("Fix: drop --resume to start a new run.")
    assert not list(out.rglob("ckpt-*.pt")) and not (out / "registry").exists()  # nothing trained


def test_resume_continues_the_interrupted_run_and_starts_the_ones_never_begun(
        prefect_harness, dataset, tmp_path):
    from flows.train import train_autoencoders
    from mm2latent.presets import get_preset
    from mm2latent.training.autoencoders import train_autoencoder
    from mm2latent.training.options import AutoencoderOptions
    from mm2latent.training.pipeline import autoencoder_run_url
    from mm2latent.training.snapshot import take_snapshot

    options = AutoencoderOptions(dataset=str(dataset), out=str(tmp_path / "runs"), epochs=2,
                                 batch_size=2, modalities=["mask", "sketch"], resume=True)
    mask_cfg = options.train_cfgs()[0]
    mask_run = autoencoder_run_url(options.out, get_preset("tiny").mask_ae, mask_cfg,
                                   take_snapshot(str(dataset)))
    # Interrupted after epoch 1 of 2, before the sketch autoencoder began.
    train_autoencoder(str(dataset), mask_run, get_preset("tiny").mask_ae, mask_cfg,
                      stop_after_epoch=1)
    mask, sketch = train_autoencoders(**options.model_dump())
    assert mask.summary.run_url == mask_run and mask.summary.epochs_done == 2
    assert sketch.summary.epochs_done == 2
    assert [r.tag for r in (mask.record, sketch.record)] == ["mask-ae-v1", "sketch-ae-v1"]
