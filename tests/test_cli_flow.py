"""One way for every CLI command to get its Prefect API (flows/cli_flow.run_flow).

Each test runs with Prefect's server start-up timeout at 0 s and no PREFECT_API_URL, so any
server start fails at once: a batch command must fail with the tied server's one-line error
(Prefect's own ephemeral server would fail with a RuntimeError traceback instead); a command
that needs no orchestration must succeed; a bad argument must be refused with its own message,
not the server's. The inputs are real: a tiny dataset and MappingNets trained for one epoch.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from prefect.settings import (PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
                              temporary_settings)
from typer.testing import CliRunner

from flows.cli import app
from flows.main import FLOW_COMMANDS, runs_a_flow
from mm2latent.attributes import run as attribute_run
from mm2latent.benchmark.fixture import write_fixture
from mm2latent.presets import get_preset
from mm2latent.synth import run as synth
from mm2latent.synth.params import parse_params
from mm2latent.training.config import MappingTrainCfg, autoencoder_train_cfg
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.pipeline import autoencoder_run, mapping_run
from mm2latent.training.registry import default_registry_url

PRESET = get_preset("tiny")
SERVER_ERROR = "error: the temporary Prefect server did not answer within 0 s"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """A tiny dataset, mask autoencoder, mask + flame MappingNets, benchmark fixture, photo, spec."""
    root = tmp_path_factory.mktemp("cli-flow")
    data, runs = str(root / "data"), str(root / "runs")
    params = parse_params(preset="tiny", n_samples=4, samples_per_shard=4, out=data,
                          modalities=("mask", "flame", "farl"))
    for shard in synth.plan(params):
        synth.run_shard(params, shard)
    scoring = attribute_run.plan(data)  # captions and curation need attributes to get past checks
    for shard in scoring.todo:
        attribute_run.run_shard(scoring, shard)
    registry, quick = default_registry_url(runs), dict(epochs=1, batch_size=4, val_fraction=0.0)
    autoencoder_run(data, runs, registry, PRESET.mask_ae, autoencoder_train_cfg("mask", **quick))
    for modality in ("mask", "flame"):
        mapping_run(data, runs, registry, mapping_net_cfg(PRESET.mapping, modality),
                    MappingTrainCfg(modality=modality, **quick))
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / "a.png")
    np.save(root / "own.npy", rng.standard_normal(159).astype(np.float32))
    spec = root / "spec.yaml"
    spec.write_text("edits:\n  smile: {kind: text, modality: flame, target: a smiling face, "
                    f"pivot: a face, betas: [1], condition: {root / 'own.npy'}}}\n")
    fixture = write_fixture(str(root / "fixture"))
    return {"root": str(root), "data": data, "runs": runs, "photo": str(photos / "a.png"),
            "photos": str(photos), "own": str(root / "own.npy"), "spec": str(spec),
            "celebamask": fixture.celebamask, "captions": fixture.captions,
            "reference": fixture.reference}


def _invoke(args: list[str]):
    """The CLI in this process, where no Prefect server can start (see the module docstring)."""
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 0},
                            restore_defaults={PREFECT_API_URL}):
        return CliRunner().invoke(app, args)


BATCH_COMMANDS = {
    "synth-data": "synth-data --n 4 --samples-per-shard 4 --out {tmp}/new",
    "train autoencoders": "train autoencoders --dataset {data} --out {tmp}/runs --epochs 1",
    "train mapping": "train mapping --dataset {data} --out {tmp}/runs --epochs 1 --modality flame",
    "benchmark": "benchmark --celebamask {celebamask} --captions {captions} --reference "
                 "{reference} --out {tmp}/bench --models {runs} --n-pairs 2",
    "edit-dataset": "edit-dataset {photos} --spec {spec} --models {runs} --out {tmp}/edits",
    "pipeline": "pipeline --n 4 --samples-per-shard 4 --data {tmp}/d --runs {tmp}/r",
    "dataset attributes": "dataset attributes {data} --sources mask",
    "dataset captions": "dataset captions {data}",
    "dataset curate": "dataset curate {data} --out {tmp}/curated --n 2",
}


@pytest.mark.parametrize("command", BATCH_COMMANDS)
def test_every_batch_command_runs_its_flow_on_the_tied_server(inputs, tmp_path, command):
    result = _invoke(BATCH_COMMANDS[command].format(tmp=tmp_path, **inputs).split())
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(SERVER_ERROR), result.output


NO_SERVER_COMMANDS = {
    "generate": "generate --text a-smiling-face --flame {own} --models {runs} --out {tmp}/g.png",
    "generate --from": "generate --from {tmp}/rows.jsonl --models {runs} --out {tmp}/rows",
    "edit": "edit {photo} --target a-smile --modality flame --flame {own} --models {runs} "
            "--out {tmp}/e.png",
    "dataset inspect": "dataset inspect {data}",
    "dataset grid": "dataset grid {data} --out {tmp}/grid.png --rows 2",
    "dataset export": "dataset export {data} 1 --out {tmp}/sample",
    "presets": "presets tiny",
    "weights list": "weights list",
}


@pytest.mark.parametrize("command", NO_SERVER_COMMANDS)
def test_commands_without_orchestration_start_no_server(inputs, tmp_path, command):
    (tmp_path / "rows.jsonl").write_text(f'{{"text": "a face", "flame": "{inputs["own"]}"}}\n')
    result = _invoke(NO_SERVER_COMMANDS[command].format(tmp=tmp_path, **inputs).split())
    assert result.exit_code == 0, result.output


BAD_VALUES = {
    "train autoencoders --recipe bogus": ("recipe='bogus'", "ours, official"),
    "train autoencoders --preset nope": ("nope",),
    "train mapping --preset nope": ("nope",),
    "train mapping --schedule sometimes": ("sometimes",),
    "pipeline --preset nope": ("nope",),
    "pipeline --mappings mask,hair": ("hair",),
}


@pytest.mark.parametrize("command", BAD_VALUES)
def test_bad_values_are_refused_before_any_server_starts(inputs, tmp_path, command):
    where = {"train": f"--dataset {inputs['data']} --out {tmp_path}/runs",
             "pipeline": f"--data {tmp_path}/d --runs {tmp_path}/r"}[command.split()[0]]
    result = _invoke(f"{command} {where}".split())
    assert result.exit_code == 2, result.output
    assert "Prefect server" not in result.output
    assert all(part in result.output for part in BAD_VALUES[command]), result.output


def test_the_console_script_launches_a_server_early_exactly_for_the_batch_commands():
    """flows/main.py starts the server before the command's imports for these commands only."""
    batch = {tuple(name.split()) for name in BATCH_COMMANDS}
    assert batch == set(FLOW_COMMANDS)
    for command in BATCH_COMMANDS.values():
        assert runs_a_flow(command.split())
        assert not runs_a_flow([*command.split(), "--help"])
    for command in NO_SERVER_COMMANDS.values():
        assert not runs_a_flow(command.split())
    assert not runs_a_flow([]) and not runs_a_flow(["train"]) and not runs_a_flow(["dataset"])
