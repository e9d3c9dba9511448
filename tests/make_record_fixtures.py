"""Write tests/fixtures/records-v1: the JSON records a benchmark run and an edit spec write today.

run.json, summary.json, one chunk's latency JSON and the CMMD reference cache's metadata of a
tiny benchmark (2 pairs on the generated fixture, one freshly trained mask MappingNet), plus the
spec JSON an edit-dataset run stores in dataset.json. They are committed so that
tests/test_record_formats.py notices when a later change stops reading files written by this
version. Measured seconds are zeroed and temp paths made relative. Regenerate only for a
deliberate format change:

    PYTHONPATH=$PWD python -m tests.make_record_fixtures
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "records-v1"
SPEC_YAML = """edits:
  smile: {kind: text, target: a smiling face, betas: [0.5, 1]}
  bangs: {kind: text, target: a face with bangs, pivot: a face, modality: sketch}
"""


def _train(data: str, runs: str) -> None:
    from mm2latent.presets import get_preset
    from mm2latent.synth import run as synth
    from mm2latent.synth.params import SynthDataParams
    from mm2latent.training.config import MappingTrainCfg, autoencoder_train_cfg
    from mm2latent.training.mapping import mapping_net_cfg
    from mm2latent.training.pipeline import autoencoder_run, mapping_run
    from mm2latent.training.registry import default_registry_url

    preset, registry = get_preset("tiny"), default_registry_url(runs)
    params = SynthDataParams(preset="tiny", n_samples=8, samples_per_shard=8, out=data,
                             modalities=("mask", "farl"))
    for shard in synth.plan(params):
        synth.run_shard(params, shard)
    quick = dict(epochs=1, batch_size=8, val_fraction=0.0)
    autoencoder_run(data, runs, registry, preset.mask_ae, autoencoder_train_cfg("mask", **quick))
    mapping_run(data, runs, registry, mapping_net_cfg(preset.mapping, "mask"),
                MappingTrainCfg(modality="mask", **quick))


def _zero_seconds(value: object) -> object:
    """Measured durations differ on every run: zero every float under a timing key."""
    if isinstance(value, dict):
        return {k: (_zeroed(v) if k in ("seconds", "latency_ms", "images_per_s", "metric_seconds")
                    else _zero_seconds(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_zero_seconds(v) for v in value]
    return value


def _zeroed(value: object) -> object:
    if isinstance(value, dict):
        return {k: 0.0 for k in value}
    return 0.0


def _write(name: str, data: object) -> None:
    (FIXTURE / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _benchmark() -> None:
    from mm2latent.benchmark import run as bench
    from mm2latent.benchmark.config import BenchmarkCfg
    from mm2latent.benchmark.fixture import write_fixture

    _train("data", "runs")
    cfg = BenchmarkCfg(**dataclasses.asdict(write_fixture("fixture")), out="bench", models="runs",
                       n_pairs=2, chunk_size=1, versions=("1",))
    started = bench.start(cfg)
    cached = bench.reference(cfg)
    bench.evaluate(cfg)
    bench.finish(cfg, cached, started.missing_captions)
    for name, target in (("run.json", "run.json"), ("summary.json", "summary.json"),
                         ("chunks/mapping-mask-v1/chunk-000000.json", "chunk.json")):
        _write(target, _zero_seconds(json.loads(Path("bench", name).read_text())))
    cache = next(Path("bench", "cache", "cmmd-reference").rglob("*.parquet"))
    _write("reference-meta.json", json.loads(pq.read_schema(cache).metadata[b"mm2latent"]))


def _spec() -> None:
    from mm2latent.edit_dataset.spec import parse_spec

    _write("edit-spec.json", parse_spec(SPEC_YAML, "spec.yaml").to_json())


def main() -> None:
    """Write the fixture from scratch (in a temp working directory: paths stay relative)."""
    shutil.rmtree(FIXTURE, ignore_errors=True)
    FIXTURE.mkdir(parents=True)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        try:
            _benchmark()
            _spec()
        finally:
            os.chdir(here)


if __name__ == "__main__":
    main()
