"""edit-dataset: shards of edited photos, resumable byte for byte, refusing bad specs and reuse.

A flame MappingNet is trained for one epoch on fabricated vectors (no images needed); the
spec gives every photo's own 3DMM code, so the seeded DECA need not run.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from mm2latent.edit_dataset import run
from mm2latent.edit_dataset.params import parse_edit_params
from mm2latent_core.errors import ConfigError, DatasetError
from mm2latent.presets import get_preset
from mm2latent.training.config import MappingTrainCfg
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.pipeline import mapping_run
from mm2latent.training.registry import default_registry_url
from storage.manifest import read_manifest
from mm2latent.fabricate.learnable import write_learnable_dataset

PRESET = get_preset("tiny")
SPEC = """
edits:
  smile: {kind: text, modality: flame, target: a smiling face, pivot: a face, betas: [0, 1.5], condition: own.npy}
  pose:  {kind: spatial, modality: flame, target: target.npy, condition: own.npy}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("editds")
    data, runs = str(root / "vectors"), root / "runs"
    write_learnable_dataset(data, n_shards=1, per_shard=16, dims={"w": 512, "flame": 159, "farl": 512},
                            members=())
    mapping_run(data, str(runs), default_registry_url(str(runs)), mapping_net_cfg(PRESET.mapping, "flame"),
                MappingTrainCfg(modality="flame", epochs=1, batch_size=8, val_fraction=0.0))
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / f"{name}.png")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(photos / "z_wide.png")  # not square
    np.save(root / "own.npy", rng.standard_normal(159).astype(np.float32))
    np.save(root / "target.npy", rng.standard_normal(159).astype(np.float32))
    (root / "spec.yaml").write_text(SPEC.replace("own.npy", str(root / "own.npy"))
                                    .replace("target.npy", str(root / "target.npy")))
    return {"root": root, "runs": runs, "photos": photos, "spec": root / "spec.yaml"}


def _params(setup, out: str, spec: Path | None = None):
    return parse_edit_params(input=str(setup["photos"]), spec=str(spec or setup["spec"]),
                             models=str(setup["runs"]), out=out, samples_per_shard=2)


def _run_all(params) -> run.EditPlan:
    edit_plan, todo = run.plan(params)
    models = run.build_models(params, edit_plan.spec.modalities())
    for shard in todo:
        run.run_shard(edit_plan, models, shard)
    return edit_plan


@pytest.fixture(scope="module")
def reference(setup) -> Path:
    out = setup["root"] / "reference"
    _run_all(_params(setup, str(out)))
    return out


def _members(tar_path: Path) -> dict[str, bytes]:
    with tarfile.open(tar_path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data))


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_shards_hold_original_inversion_and_every_edit(setup, reference):
    members = _members(reference / "shard-000000.tar")
    assert sorted(k for k in members if k.startswith("000000000.")) == [
        "000000000.json", "000000000.png", "000000000.pose.0.png", "000000000.pose.0.w_plus.npy",
        "000000000.smile.0.png", "000000000.smile.0.w_plus.npy", "000000000.smile.1.png",
        "000000000.smile.1.w_plus.npy", "000000000.w_plus.npy"]
    original = np.asarray(Image.open(setup["photos"] / "a.png"))
    assert np.array_equal(_png(members["000000000.png"]), original)
    inversion = _npy(members["000000000.w_plus.npy"])
    assert inversion.shape == (PRESET.e4e.n_styles, 512)
    assert np.array_equal(_npy(members["000000000.smile.0.w_plus.npy"]), inversion)  # beta 0
    assert not np.array_equal(_npy(members["000000000.smile.1.w_plus.npy"]), inversion)
    manifest = read_manifest(str(reference / "shard-000000.parquet"))
    assert np.array_equal(np.asarray(manifest["w_plus"][0].as_py(), np.float32), inversion.reshape(-1))
    meta = json.loads(members["000000000.json"])
    assert meta["edits"]["smile"] == {"kind": "text", "betas": [0.0, 1.5]}
    assert meta["edits"]["pose"] == {"kind": "spatial", "betas": [1.0]}  # the paper's default


def test_beta_zero_image_is_the_reconstruction_of_the_inversion(setup, reference):
    from mm2latent.inference import load_inference

    model = load_inference("tiny", default_registry_url(str(setup["runs"])), "flame")
    members = _members(reference / "shard-000000.tar")
    inversion = torch.from_numpy(_npy(members["000000001.w_plus.npy"]))[None]
    expected = model.synthesize(inversion)[0].numpy()
    assert np.array_equal(_png(members["000000001.smile.0.png"]), expected)


def test_unaligned_photo_is_a_failed_row_and_index_records_the_run(reference):
    manifest = read_manifest(str(reference / "shard-000001.parquet")).to_pylist()
    assert [r["status"] for r in manifest] == ["ok", "failed"]
    assert "not square" in manifest[1]["error"] and "--align" in manifest[1]["error"]
    index = json.loads((reference / "dataset.json").read_text())
    assert len(index["parameters"]["spec_sha256"]) == 64
    assert index["parameters"]["model_versions"] == {"mapping-flame": "mapping-flame-v1"}
    assert set(index["weights"]) == {"generator", "farl", "deca", "e4e", "mapping-flame-v1"}
    assert all(json.loads((reference / f"shard-00000{s}.stats.json").read_text())["count"] == 2 for s in (0, 1))


def test_an_interrupted_run_resumes_byte_identical(setup, reference, monkeypatch):
    out = setup["root"] / "interrupted"
    params = _params(setup, str(out))
    edit_plan, todo = run.plan(params)
    models = run.build_models(params, edit_plan.spec.modalities())
    run.run_shard(edit_plan, models, todo[0])
    real_commit = run.commit_shard

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the tar was written, before the manifest and stats

    monkeypatch.setattr(run, "commit_shard", crash)
    with pytest.raises(KeyboardInterrupt):
        run.run_shard(edit_plan, models, todo[1])
    monkeypatch.setattr(run, "commit_shard", real_commit)
    assert (out / "shard-000001.tar").exists() and not (out / "shard-000001.stats.json").exists()
    edit_plan, todo = run.plan(params)
    assert todo == [1]
    run.run_shard(edit_plan, models, 1)
    names = sorted(p.name for p in reference.iterdir())
    assert names == sorted(p.name for p in out.iterdir())
    for name in names:
        if name.endswith(".stats.json"):  # identical except the seconds spent
            ours, theirs = (json.loads((d / name).read_text()) for d in (out, reference))
            assert ours.pop("durations_s").keys() == theirs.pop("durations_s").keys()
            assert ours == theirs  # including every tar and parquet sha256
        else:
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_another_spec_into_the_same_out_is_refused(setup, reference):
    other = setup["root"] / "other.yaml"
    other.write_text(setup["spec"].read_text().replace("1.5", "2.5"))
    with pytest.raises(DatasetError, match="spec_sha256"):
        run.validate(_params(setup, str(reference), other))


@pytest.mark.parametrize("edit, message", [
    ("x: {kind: spatial, modality: depth, target: t.npy}", r"edit 'x': field 'modality'.*choose one of mask, sketch, flame"),
    ("x: {kind: spatial, modality: mask, target: /nonexistent/m.png}", r"edit 'x': field 'target'.*does not exist"),
    ("x: {kind: text, target: a smile, betas: [1, .nan]}", r"edit 'x': field 'betas'.*beta\[1\] is nan"),
    ("x: {kind: warp, target: a smile}", r"edit 'x': field 'kind'"),
    ("x.y: {kind: text, target: a smile}", r"edit name 'x.y'"),
])
def test_bad_specs_fail_before_writing_naming_edit_and_field(setup, tmp_path, edit, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(f"edits:\n  ok: {{kind: text, target: a smile}}\n  {edit}\n")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message):
        run.plan(_params(setup, str(out), spec))
    assert not out.exists()
    result = CliRunner().invoke(app, ["edit-dataset", str(setup["photos"]), "--spec", str(spec),
                                      "--models", str(setup["runs"]), "--out", str(out)])
    assert result.exit_code == 2 and "'x" in result.output
    assert not out.exists()


def test_cli_flow_on_a_finished_dataset_skips_work_and_publishes_the_sheet(prefect_harness, setup, reference):
    result = CliRunner().invoke(app, ["edit-dataset", str(setup["photos"]), "--spec", str(setup["spec"]),
                                      "--models", str(setup["runs"]), "--out", str(reference),
                                      "--samples-per-shard", "2"])
    assert result.exit_code == 0, result.output
    assert "3 edited, 1 failed, 2 shards" in result.output


def test_cli_edit_strip_with_a_dataset_sample_target_and_export(setup, tmp_path):
    runner, models = CliRunner(), str(setup["runs"])
    vectors = str(setup["root"] / "vectors")
    exported = runner.invoke(app, ["dataset", "export", vectors, "3", "--out", str(tmp_path / "s3")])
    assert exported.exit_code == 0, exported.output
    assert sorted(p.name for p in (tmp_path / "s3").iterdir()) == ["farl.npy", "flame.npy", "image.png", "w.npy"]
    strip, photo = tmp_path / "strip.png", str(setup["photos"] / "a.png")
    own = str(setup["root"] / "own.npy")
    args = ["edit", photo, "--flame", own, "--beta", "0,1", "--models", models, "--out"]
    result = runner.invoke(app, [*args, str(strip), "--target-flame", f"{vectors}#3"])
    assert result.exit_code == 0, result.output
    assert "strip: original | beta 0, 1" in result.output
    from_file = tmp_path / "from_file.png"
    result = runner.invoke(app, [*args, str(from_file), "--target-flame", str(tmp_path / "s3" / "flame.npy")])
    assert result.exit_code == 0, result.output
    image = _png(strip.read_bytes())
    assert image.shape == (64, 3 * 64, 3)
    assert np.array_equal(image[:, :64], np.asarray(Image.open(photo)))  # original first
    assert np.array_equal(image, _png(from_file.read_bytes()))  # DATASET#INDEX == exported file
    assert not np.array_equal(image[:, 64:128], image[:, 128:])  # beta 0 differs from beta 1


def test_cli_edit_says_how_to_align_an_unaligned_photo(setup):
    wide = str(setup["photos"] / "z_wide.png")
    result = CliRunner().invoke(app, ["edit", wide, "--target", "a smile", "--modality", "flame",
                                      "--models", str(setup["runs"])])
    assert result.exit_code == 2
    assert "not square" in result.output and "--align" in result.output
    both = CliRunner().invoke(app, ["edit", wide, "--target", "a smile", "--target-mask", "m.png"])
    assert both.exit_code == 2 and "either --target TEXT" in both.output


def test_generate_from_rows_writes_resumable_shards(setup, tmp_path):
    from mm2latent.inference import load_inference

    vectors = str(setup["root"] / "vectors")
    lines = [{"text": "a smiling face", "flame": f"{vectors}#3"},
             {"text": "an old man", "flame": str(setup["root"] / "own.npy"), "seed": 4}]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "gen"
    args = ["generate", "--from", str(rows), "--models", str(setup["runs"]), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    members = _members(out / "shard-000000.tar")
    model = load_inference("tiny", default_registry_url(str(setup["runs"])), "flame")
    own = np.load(setup["root"] / "own.npy")
    expected = model.generate(["an old man"], own, noise_seed=4)[0].numpy()
    assert np.array_equal(_png(members["000000001.png"]), expected)
    assert json.loads(members["000000001.json"])["seed"] == 4
    first = (out / "shard-000000.tar").read_bytes()
    again = CliRunner().invoke(app, args)  # complete: nothing redone
    assert again.exit_code == 0 and "0 generated now, 2 already done" in again.output
    assert (out / "shard-000000.tar").read_bytes() == first
    rows.write_text(json.dumps({"text": "a face", "mask": "x.png", "sketch": "y.png"}) + "\n")
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 2 and "rows.jsonl:1" in bad.output and "exactly one of mask, sketch, flame" in bad.output
