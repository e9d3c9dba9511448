"""Typed records read files written by the previous version, and write the same keys back.

tests/fixtures/records-v1 holds what a tiny benchmark run and an edit spec wrote before the
records were typed (tests/make_record_fixtures.py regenerates it). Provenance goes to the page
only, so its previous JSON is written out here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from mm2latent.benchmark.config import BenchmarkCfg, RunIdentity
from mm2latent.benchmark.records import BenchmarkSummary, ChunkLatency, ReferenceMeta
from mm2latent.benchmark.report import render_report
from mm2latent.edit_dataset.spec import EditSpec, parse_spec
from mm2latent_core.errors import ConfigError
from mm2latent.interactive.provenance import (EditInputs, GenerateInputs, Provenance,
                                              SpatialDirection, TextDirection)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "records-v1"


def _read(name: str) -> dict:
    return json.loads((FIXTURE / name).read_text())


@pytest.mark.parametrize("name, record", [
    ("run.json", RunIdentity), ("summary.json", BenchmarkSummary), ("chunk.json", ChunkLatency),
    ("reference-meta.json", ReferenceMeta)])
def test_benchmark_files_of_the_previous_version_read_and_write_back_unchanged(name, record):
    data = _read(name)
    assert record.from_json(data).to_json() == data


def test_a_previous_summary_reads_by_attribute_and_renders_the_report():
    summary = BenchmarkSummary.from_json(_read("summary.json"))
    row = summary.row("mapping-mask-v1")
    assert row.switches.depth == 12 and row.latency_ms.total == 0.0 and row.weights == ()
    assert summary.run.missing_captions == (5380,) and summary.run.conventions.ref_n == 12
    assert summary.run.config.cfg.versions == ("1",) and summary.run.config.models is None
    assert "| **trained here: mapping-mask-v1** |" in render_report(summary)
    with pytest.raises(KeyError, match="mapping-mask-v9 is not in this summary"):
        summary.row("mapping-mask-v9")


def test_the_same_settings_write_the_same_run_json_as_before():
    # run.json decides whether --out may be reused and (hashed) the pipeline's run folder:
    # a change of its keys would refuse or redo every run made by the previous version.
    settings = RunIdentity.from_json(_read("summary.json")["run"]["config"]).cfg
    cfg = dataclasses.replace(settings, out="bench", device="cuda", grid_rows=2)
    assert cfg.identity(["mapping-mask-v1"]).to_json() == _read("run.json")
    assert cfg.identity().to_json() == _read("summary.json")["run"]["config"]
    assert RunIdentity.from_json(_read("run.json")).models == ("mapping-mask-v1",)


def test_a_broken_record_names_the_missing_field():
    data = _read("summary.json")
    del data["models"][0]["cmmd"]
    with pytest.raises(ConfigError, match="ModelSummary: missing field.*cmmd"):
        BenchmarkSummary.from_json(data)


def test_nan_metrics_survive_summary_json():
    data = _read("summary.json")
    data["models"][0]["images_per_s"] = float("nan")
    text = json.dumps(BenchmarkSummary.from_json(data).to_json())  # as finish writes it
    assert math.isnan(BenchmarkSummary.from_json(json.loads(text)).models[0].images_per_s)


def test_the_edit_spec_of_a_previous_dataset_json_reads_back():
    data = _read("edit-spec.json")
    spec = EditSpec.from_json(data, "dataset.json")
    assert spec.to_json() == data
    assert [e.name for e in spec.edits] == ["bangs", "smile"] and spec.modalities() == ["sketch", "mask"]
    # The same edits as a spec file give the same hash (dataset.json's spec_sha256).
    yaml_text = "edits:\n" + "".join(f"  {name}: {json.dumps(body)}\n" for name, body in data.items())
    assert parse_spec(yaml_text).sha256 == spec.sha256


def test_an_edit_spec_with_a_spatial_target_round_trips(tmp_path):
    import numpy as np

    from mm2latent.fabricate.datasets import png_bytes

    target = tmp_path / "target.png"
    target.write_bytes(png_bytes(np.zeros((8, 8), np.uint8)))  # a blank sketch
    spec = parse_spec(f"edits:\n  s: {{kind: spatial, modality: sketch, target: {target}}}\n")
    again = EditSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again.sha256 == spec.sha256 and again.edits[0].target.shape == (8, 8)


PREVIOUS_PROVENANCE = [  # the page's JSON before the records were typed
    {"preset": "tiny", "makes_faces": False, "weights": {"all": "seeded (init_seed 1234)"},
     "models": {"mapping-mask": "seeded"}, "versions": {"mm2latent": "0.1.0", "torch": "2.5.1"},
     "mode": "generate", "caption": "a face", "modality": "mask", "condition_sha256": "ab" * 32,
     "seed": 3, "truncation_psi": 1.0, "image_sha256": "cd" * 32},
    {"preset": "tiny", "makes_faces": False, "weights": {"all": "seeded (init_seed 1234)"},
     "models": {"mapping-mask": "seeded"}, "versions": {"mm2latent": "0.1.0"}, "mode": "edit",
     "photo_sha256": "ef" * 32, "beta": 0.5, "kind": "text", "modality": "mask",
     "target": "a smiling face", "pivot": "a face", "image_sha256": "01" * 32},
    {"preset": "tiny", "makes_faces": False, "weights": {}, "models": {}, "versions": {},
     "mode": "edit", "photo_sha256": "ef" * 32, "beta": 1.0, "kind": "spatial",
     "modality": "sketch", "target_sha256": "23" * 32, "image_sha256": "45" * 32},
]


@pytest.mark.parametrize("data", PREVIOUS_PROVENANCE, ids=["generate", "text-edit", "spatial-edit"])
def test_provenance_keeps_its_flat_json(data):
    record = Provenance.from_json(data)
    assert record.to_json() == data and list(record.to_json()) == list(data)  # same keys, same order
    expected = {"generate": GenerateInputs, "edit": EditInputs}[data["mode"]]
    assert isinstance(record.inputs, expected) and record.inputs.modality == data["modality"]
    if data["mode"] == "edit":
        kind = {"text": TextDirection, "spatial": SpatialDirection}[data["kind"]]
        assert isinstance(record.inputs.direction, kind)


def test_provenance_of_an_unknown_mode_is_refused():
    with pytest.raises(ConfigError, match="mode 'paint' is not one of generate, edit"):
        Provenance.from_json(PREVIOUS_PROVENANCE[0] | {"mode": "paint"})


def test_benchmark_cfg_identity_ignores_the_fields_that_leave_results_alone():
    base = BenchmarkCfg(celebamask="c", captions="k", reference="r", out="a")
    other = dataclasses.replace(base, out="b", device="cuda", cache="x", grid_rows=1)
    assert base.identity() == other.identity()
    assert base.identity() != dataclasses.replace(base, seed=1).identity()
