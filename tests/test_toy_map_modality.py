"""A MAP modality defined only in tests goes through every path: the registry's proof for maps.

SHADE (tests/toy_map.py: brightness in 4 levels) is named by no project file. Registered the way
a user's own modality is, with MM2LATENT_MODALITIES=tests.toy_map:SPEC, it is written by
synth-data, decoded by the readers, trains an autoencoder and a MappingNet on its embeddings,
and `generate`, `edit` (text and spatial), `generate --from`, edit-dataset specs and the app's
generate all accept it, their flags derived from the registry.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from flows.app.server import AppState, create_app
from flows.cli_generate import add_inference_commands
from mm2latent.conditions import load_condition, load_photo
from mm2latent.edit_dataset import run as edit_run
from mm2latent.edit_dataset.params import parse_edit_params
from mm2latent.editing import spatial_edit, text_edit
from mm2latent.inference import load_inference
from mm2latent.interactive.models import load_model_set
from mm2latent.modalities.registry import PLUGINS_ENV, default_registry
from mm2latent.presets import get_preset
from mm2latent.synth import run as synth_run
from mm2latent.synth.params import parse_params
from mm2latent.training.autoencoders import preset_autoencoder
from mm2latent.training.config import MappingTrainCfg, autoencoder_train_cfg
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.pipeline import autoencoder_run, mapping_run
from mm2latent.training.registry import default_registry_url
from mm2latent_core.errors import ConfigError
from storage.readers import iter_samples
from storage.samples import read_sample_members
from tests import toy_map

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "tests.toy_map:SPEC"
PRESET = get_preset("tiny")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, str]:
    """With the plugin set: a 6-sample dataset storing shade and farl, a shade autoencoder and
    a shade MappingNet registered under runs/."""
    root = tmp_path_factory.mktemp("shade")
    data, runs = str(root / "data"), str(root / "runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PLUGINS_ENV, PLUGIN)
        params = parse_params(preset="tiny", n_samples=6, samples_per_shard=3, out=data,
                              modalities=("farl", "shade"))
        for shard in synth_run.plan(params):
            synth_run.run_shard(params, shard)
        registry = default_registry_url(runs)
        ae = autoencoder_run(data, runs, registry, preset_autoencoder(PRESET, "shade"),
                             autoencoder_train_cfg("shade", epochs=2, batch_size=3, val_fraction=0.0))
        mapping = mapping_run(data, runs, registry, mapping_net_cfg(PRESET.mapping, "shade"),
                              MappingTrainCfg(modality="shade", epochs=2, batch_size=3,
                                              val_fraction=0.0))
    return {"data": data, "runs": runs, "registry": registry, "ae": ae.record.tag,
            "mapping": mapping.record.tag, "embeddings": ae.embeddings.url}


@pytest.fixture
def plugin(monkeypatch):
    monkeypatch.setenv(PLUGINS_ENV, PLUGIN)


@pytest.fixture
def model(trained, plugin):
    return load_inference("tiny", trained["registry"], "shade")


def _cli() -> typer.Typer:
    """A CLI app built now: its condition flags come from the registry (plugin included)."""
    app = typer.Typer()
    add_inference_commands(app)
    return app


def _png(path: str | Path) -> np.ndarray:
    with Image.open(io.BytesIO(Path(path).read_bytes())) as im:
        return np.asarray(im.convert("RGB"))


def test_synth_data_writes_shade_and_the_readers_decode_it(trained, plugin):
    with tarfile.open(Path(trained["data"]) / "shard-000000.tar") as tar:
        assert "000000000.shade.png" in tar.getnames()
    for sample in iter_samples(trained["data"], modalities=("image", "shade"), split_by_node=False,
                               split_by_worker=False, registry=default_registry()):
        pixels = (sample["image"] * 255).round().to(torch.uint8)  # (3, S, S) as stored
        expected = toy_map.shades(pixels[None].float() / 255)[0]  # annotated from those pixels
        assert torch.equal(sample["shade"], expected.long())


def test_an_autoencoder_and_a_mapping_net_train_on_shade(trained):
    assert trained["ae"] == "shade-ae-v1" and trained["mapping"] == "mapping-shade-v1"
    assert "shade-ae" in trained["embeddings"]


def test_generate_edit_and_from_rows_accept_shade(trained, model, tmp_path):
    app, runner, data, runs = _cli(), CliRunner(), trained["data"], trained["runs"]
    help_text = runner.invoke(app, ["edit", "--help"], env={"COLUMNS": "200"}).output
    assert "--target-shade" in help_text and "Spatial edit toward this shade map" in help_text
    assert "The photo's own shade map instead of its brightness" in help_text

    out = tmp_path / "gen.png"
    result = runner.invoke(app, ["generate", "--text", "a face", "--shade", f"{data}#0",
                                 "--models", runs, "--out", str(out)])
    assert result.exit_code == 0, result.output
    condition = load_condition("shade", f"{data}#0")
    assert np.array_equal(_png(out), model.generate(["a face"], condition)[0].numpy())

    photo, target = f"{data}#2", f"{data}#1"
    strip = tmp_path / "text.png"
    result = runner.invoke(app, ["edit", photo, "--target", "a smiling face", "--modality", "shade",
                                 "--beta", "0,1", "--models", runs, "--out", str(strip)])
    assert result.exit_code == 0, result.output
    expected = text_edit(model, load_photo(photo), "a smiling face", "a face", [0.0, 1.0])
    assert np.array_equal(_png(strip), expected.strip())  # the photo annotated by the spec

    spatial = tmp_path / "spatial.png"
    result = runner.invoke(app, ["edit", photo, "--target-shade", target, "--models", runs,
                                 "--out", str(spatial)])
    assert result.exit_code == 0, result.output
    expected = spatial_edit(model, load_photo(photo), load_condition("shade", target), [1.0])
    assert np.array_equal(_png(spatial), expected.images[0, 0].numpy())

    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"text": "a face", "shade": f"{data}#3", "seed": 1}) + "\n")
    shards = tmp_path / "rows"
    result = runner.invoke(app, ["generate", "--from", str(rows), "--models", runs, "--out", str(shards)])
    assert result.exit_code == 0, result.output
    with tarfile.open(shards / "shard-000000.tar") as tar:
        image = _png_bytes(tar.extractfile("000000000.png").read())
    expected = model.generate(["a face"], load_condition("shade", f"{data}#3"), noise_seed=1)
    assert np.array_equal(image, expected[0].numpy())


def _png_bytes(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def test_an_edit_dataset_spec_accepts_shade(trained, model, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(read_sample_members(trained["data"], 4)["png"])
    target = f"{trained['data']}#1"
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"edits:\n  toward: {{kind: spatial, modality: shade, target: '{target}'}}\n"
                    "  smile: {kind: text, modality: shade, target: a smiling face, betas: [1]}\n")
    params = parse_edit_params(input=str(photos), spec=str(spec), models=trained["runs"],
                               out=str(tmp_path / "edits"))
    plan, todo = edit_run.plan(params)
    assert plan.spec.modalities() == ["shade"]
    models = edit_run.build_models(params, plan.spec.modalities())
    for shard in todo:
        edit_run.run_shard(plan, models, shard)
    with tarfile.open(tmp_path / "edits" / "shard-000000.tar") as tar:
        edited = _png_bytes(tar.extractfile("000000000.toward.0.png").read())
    expected = spatial_edit(model, load_photo(str(photos / "a.png")), load_condition("shade", target))
    assert np.array_equal(edited, expected.images[0, 0].numpy())


def test_the_app_offers_and_generates_from_shade(trained, model):
    model_set = load_model_set("tiny", trained["registry"])
    assert list(model_set.models) == ["shade"]  # the only MappingNet registered
    condition = load_condition("shade", f"{trained['data']}#5")
    painted = {"modality": "shade", "width": 64, "height": 64,
               "data": base64.b64encode(condition.astype(np.uint8).tobytes()).decode()}
    with TestClient(create_app(AppState(model_set)), raise_server_exceptions=False) as client:
        assert client.get("/api/info").json()["modalities"] == ["shade"]
        got = client.post("/api/generate", json={"caption": "a face", "condition": painted, "seed": 2})
        assert got.status_code == 200, got.text
        bad = dict(painted, data=base64.b64encode(bytes([9]) * 64 * 64).decode())
        refused = client.post("/api/generate", json={"caption": "a face", "condition": bad})
    raw = base64.b64decode(got.json()["image"].split(",", 1)[1])
    expected = model.generate(["a face"], condition, noise_seed=2)[0].numpy()
    assert np.array_equal(_png_bytes(raw), expected)
    assert refused.status_code == 400 and "levels 0..3" in refused.json()["error"]


def test_the_installed_cli_takes_the_plugin_from_the_environment(trained, tmp_path, prefect_home):
    out = tmp_path / "sub.png"
    env = dict(os.environ, **{PLUGINS_ENV: PLUGIN, "PYTHONPATH": str(ROOT),
                              "PREFECT_HOME": str(prefect_home)})
    args = [str(Path(sys.executable).parent / "mm2latent"), "generate", "--text", "a face",
            "--shade", f"{trained['data']}#0", "--models", trained["runs"], "--out", str(out)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PLUGINS_ENV, PLUGIN)
        model = load_inference("tiny", trained["registry"], "shade")
        expected = model.generate(["a face"], load_condition("shade", f"{trained['data']}#0"))
    assert np.array_equal(_png(out), expected[0].numpy())
    bad = subprocess.run(args[:2] + ["--help"], env=dict(env, **{PLUGINS_ENV: "tests.nothing:SPEC"}),
                         capture_output=True, text=True, timeout=600, check=False)
    assert bad.returncode == 2 and PLUGINS_ENV in bad.stderr and "Traceback" not in bad.stderr


def test_without_the_plugin_nothing_knows_shade(monkeypatch):
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    assert "shade" not in default_registry()
    flags = CliRunner().invoke(_cli(), ["generate", "--help"], env={"COLUMNS": "200"}).output
    assert "--mask" in flags and "--flame" in flags and "--shade" not in flags
    # The project's flags keep their help, now written once in each modality's spec.
    assert re.search(r"--mask \S+ Label-id PNG \(CelebAMask-HQ ids 0\.\.18\), or DATASET#INDEX\.",
                     _words(flags))
    edit = _words(CliRunner().invoke(_cli(), ["edit", "--help"], env={"COLUMNS": "200"}).output)
    assert ("Spatial edit toward this 3DMM code: a file, or a dataset sample as DATASET#INDEX "
            "(e.g. data/tiny#3).") in edit and "--target-flame" in edit
    assert "(mask, sketch or flame; default mask)" in edit


def _words(help_text: str) -> str:
    """The help's words in one line: without the table's borders and line breaks."""
    return " ".join(help_text.replace("│", " ").split())
    monkeypatch.setenv(PLUGINS_ENV, "tests.toy_map:NAME")
    with pytest.raises(ConfigError, match="is a str, not a ModalitySpec"):
        default_registry()
