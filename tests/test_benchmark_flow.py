"""The benchmark end to end on the tiny preset and the generated fixture.

The module fixture makes a 16-sample tiny dataset, trains the mask autoencoder and two mask
MappingNets (v1 the preset's, v2 an ablation: depth 4, no BatchNorm). Tiny networks are random,
so only behaviour is checked here, never metric values.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from mm2latent import inference
from mm2latent.benchmark import run as bench
from mm2latent.benchmark.config import BenchmarkCfg
from mm2latent.benchmark.records import BenchmarkSummary
from mm2latent.benchmark.fixture import write_fixture
from mm2latent.benchmark.masks import ANNOTATION_CLASSES, merge_class_masks
from mm2latent_core.errors import ConfigError, Mm2LatentError
from mm2latent.presets import PRESETS, get_preset
from mm2latent.synth import run as synth
from mm2latent.synth.params import SynthDataParams
from mm2latent.training.config import MappingTrainCfg, autoencoder_train_cfg
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.pipeline import autoencoder_run, mapping_run
from mm2latent.training.registry import default_registry_url
from storage import benchmark_store as store
from storage.celeba import merged_mask, scan_celebamask
from tests.fabricate_official import (mask_ae_shapes, place_released_mask_models, random_state,
                                      tiny_official_preset, write_lightning_1x)

PRESET = get_preset("tiny")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """{"models": training --out with mapping-mask v1 and v2, "fixture": the data URLs}."""
    root = tmp_path_factory.mktemp("benchmark")
    data, runs = str(root / "data"), str(root / "runs")
    registry = default_registry_url(runs)
    params = SynthDataParams(preset="tiny", n_samples=16, samples_per_shard=16, out=data,
                             modalities=("mask", "farl"))
    for shard in synth.plan(params):
        synth.run_shard(params, shard)
    quick = dict(epochs=1, batch_size=8, val_fraction=0.0)
    autoencoder_run(data, runs, registry, PRESET.mask_ae, autoencoder_train_cfg("mask", **quick))
    mapping_run(data, runs, registry, mapping_net_cfg(PRESET.mapping, "mask"),
                MappingTrainCfg(modality="mask", **quick))
    mapping_run(data, runs, registry, mapping_net_cfg(PRESET.mapping, "mask", use_batchnorm=False,
                                                      depth=4), MappingTrainCfg(modality="mask", **quick))
    return {"models": runs, "fixture": write_fixture(str(root / "fixture")), "root": root}


def _cfg(setup: dict, out: str, **overrides) -> BenchmarkCfg:
    values = dict(dataclasses.asdict(setup["fixture"]), out=out, models=setup["models"], n_pairs=2, chunk_size=1,
                  versions=("1",)) | overrides
    return BenchmarkCfg(**values)


def _run(cfg: BenchmarkCfg) -> BenchmarkSummary:
    started = bench.start(cfg)
    cached = bench.reference(cfg)
    bench.evaluate(cfg)
    finished = bench.finish(cfg, cached, started.missing_captions)
    assert bench.read_summary(cfg.out) == finished.summary  # summary.json reads back as written
    return finished.summary


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_same_seeds_give_identical_parquet_and_a_rerun_redoes_only_missing_chunks(setup, tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    _run(_cfg(setup, a))
    summary = _run(_cfg(setup, b))
    assert _read(f"{a}/results.parquet") == _read(f"{b}/results.parquet")
    assert _read(f"{a}/pairs.parquet") == _read(f"{b}/pairs.parquet")
    assert [m.model for m in summary.models] == ["mapping-mask-v1"]
    # Lose the second chunk (as if interrupted): a rerun computes that chunk alone.
    os.remove(f"{b}/chunks/mapping-mask-v1/chunk-000001.json")
    assert bench.evaluate(_cfg(setup, b)) == {"mapping-mask-v1": 1}
    bench.finish(_cfg(setup, b), bench.reference(_cfg(setup, b)), [])
    assert _read(f"{a}/results.parquet") == _read(f"{b}/results.parquet")
    # The same --out with other settings is refused.
    with pytest.raises(Mm2LatentError, match="other settings"):
        bench.start(_cfg(setup, b, seed=1))


def test_unknown_version_bad_roots_and_empty_pair_set_write_nothing(setup, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(Mm2LatentError, match="no 'mapping-mask' version 9; known: 1, 2"):
        bench.start(_cfg(setup, out, versions=("9",)))
    with pytest.raises(Mm2LatentError, match="CelebAMask-HQ-mask-anno"):
        bench.start(_cfg(setup, out, celebamask=str(tmp_path)))
    empty = tmp_path / "captions_hq.json"
    empty.write_text('{"99999.jpg": {"overall_caption": "nobody"}}')
    with pytest.raises(Mm2LatentError, match="empty pair set"):
        bench.start(_cfg(setup, out, captions=str(empty)))
    with pytest.raises(Mm2LatentError, match="no such folder"):
        bench.start(_cfg(setup, out, reference=str(tmp_path / "ffhq")))
    assert not os.path.exists(out)
    result = CliRunner().invoke(app, ["benchmark", "--out", out, "--models", setup["models"],
                                      "--model-version", "v7", "--celebamask",
                                      setup["fixture"].celebamask, "--captions",
                                      setup["fixture"].captions, "--reference",
                                      setup["fixture"].reference])
    assert result.exit_code == 2, result.output
    assert "version 7" in result.output and not os.path.exists(out)


def test_cli_ablation_report_grid_and_missing_caption(setup, tmp_path, prefect_harness):
    out = str(tmp_path / "bench")
    fixture = setup["fixture"]
    result = CliRunner().invoke(app, [
        "benchmark", "--celebamask", fixture.celebamask, "--captions", fixture.captions,
        "--reference", fixture.reference, "--out", out, "--models", setup["models"],
        "--n-pairs", "2", "--chunk-size", "1", "--ablation"])
    assert result.exit_code == 0, result.output
    assert "mapping-mask-v1" in result.output and "mapping-mask-v2" in result.output
    assert "5380.jpg" in result.output
    report = open(f"{out}/report.md").read()
    assert "These numbers mean nothing" in report
    assert "| MM2Latent (paper) | 24.59 | 85.61 | 1.43 |" in report
    assert "## Table 2" in report and "| mapping-mask-v2 | 4 |" in report
    assert "5380.jpg" in report
    assert os.path.getsize(f"{out}/grid.png") > 0
    import pyarrow.parquet as pq

    table = pq.read_table(f"{out}/results.parquet")
    assert table.num_rows == 4 and set(table.column("model").to_pylist()) == {
        "mapping-mask-v1", "mapping-mask-v2"}
    assert set(table.column_names) >= {"image_id", "caption", "clip_score", "mask_accuracy"}


def test_a_synth_data_dataset_as_reference_is_embedded_once(setup, tmp_path, monkeypatch):
    from mm2latent.benchmark import reference as reference_module

    cfg = _cfg(setup, str(tmp_path / "out"), reference=str(setup["root"] / "data"))
    meta = bench.reference(cfg)
    assert meta.meta.images == 16 and meta.meta.count == 16 * 16

    def no_embedding(*args, **kwargs):
        raise AssertionError("the cached reference embeddings were not used")

    monkeypatch.setattr(reference_module, "embed_reference", no_embedding)
    assert bench.reference(cfg) == meta


@pytest.fixture
def released(tmp_path, monkeypatch) -> str:
    """Preset "tiny-official", naming fabricated authors' mask models placed in a temp cache."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("MM2LATENT_CACHE", str(cache))
    mask_ae = write_lightning_1x(tmp_path / "mask.ckpt", random_state(mask_ae_shapes(), seed=1))
    place_released_mask_models(cache, mask_ae)
    monkeypatch.setitem(PRESETS, "tiny-official", tiny_official_preset())
    return "tiny-official"


@torch.no_grad()
def test_released_models_sit_next_to_trained_ones_deterministic_and_resumable(setup, released,
                                                                             tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    cfg = _cfg(setup, a, preset=released, versions=("released", "latest"))
    summary = _run(cfg)
    assert [m.model for m in summary.models] == ["released", "mapping-mask-v2"]
    import pyarrow.parquet as pq

    table = pq.read_table(f"{a}/results.parquet").to_pydict()
    assert table["model"] == ["released", "released", "mapping-mask-v2", "mapping-mask-v2"]
    assert table["image_id"][:2] == table["image_id"][2:]  # the same pairs for both
    report = open(f"{a}/report.md").read()
    assert "| **MM2Latent (authors' released models)** |" in report
    assert "| **trained here: mapping-mask-v2** |" in report
    assert "`mm2latent.mapping-mask-official`" in report and "FaRL `seeded tiny FaRL`" in report
    assert store.read_png(f"{a}/grid.png").shape[1] == (2 + 2) * 128  # mask, caption, 2 models
    # The released rows are the authors' networks: generate one pair by hand and compare.
    model = inference.load_inference(released, "does/not/exist", "mask")
    pair = bench.read_pairs(a)[0]
    mask = merged_mask(scan_celebamask(cfg.celebamask, ANNOTATION_CLASSES), pair.image_id,
                       bench.cache_url(cfg, "celebamask-merged"), merge_class_masks)
    w = model.mapping(model.text_embeddings([pair.caption]), model.spatial_embeddings(mask[None]))
    image = model.synthesize(w, noise_seed=pair.noise_seed)[0].numpy()
    assert (store.read_png(f"{a}/examples/released/{pair.image_id}.png") == image).all()
    # An interrupted released chunk is recomputed alone, with the same bytes.
    shutil.copytree(a, b)
    os.remove(f"{b}/chunks/released/chunk-000000.json")
    assert bench.evaluate(_cfg(setup, b, preset=released, versions=("released", "latest"))) == {
        "released": 1, "mapping-mask-v2": 0}
    bench.finish(cfg := _cfg(setup, b, preset=released, versions=("released", "latest")),
                 bench.reference(cfg), [])
    assert _read(f"{a}/results.parquet") == _read(f"{b}/results.parquet")


def test_released_needs_a_preset_naming_the_authors_models(setup, released, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ConfigError, match="preset 'tiny' names no released mask.*tiny-official"):
        bench.start(_cfg(setup, out, versions=("released", "1")))
    # Only the released models: no model registry is needed.
    plan = bench.make_plan(_cfg(setup, out, preset=released, models=str(tmp_path / "none"),
                                versions=("released",)))
    assert [m.tag for m in plan.models] == ["released"]
    fixture = setup["fixture"]
    result = CliRunner().invoke(app, [
        "benchmark", "--celebamask", fixture.celebamask, "--captions", fixture.captions,
        "--reference", fixture.reference, "--out", out, "--models", setup["models"],
        "--versions", "latest,released"])
    assert result.exit_code == 2, result.output
    assert "names no released" in result.output and not os.path.exists(out)


def test_a_models_placeholder_in_out_gives_each_new_version_its_own_folder(setup, tmp_path,
                                                                          prefect_harness):
    # benchmark/tiny runs after every retrain on "latest": with a fixed out, the run after a new
    # version was registered refused the folder holding the previous version's run.
    from flows.benchmark import benchmark

    fixture, out = setup["fixture"], str(tmp_path / "{models}")
    common = dict(celebamask=fixture.celebamask, captions=fixture.captions,
                  reference_images=fixture.reference, out=out, models=setup["models"],
                  n_pairs=2, chunk_size=1, cache=str(tmp_path / "cache"))
    first = benchmark(versions=["1"], **common)
    second = benchmark(versions=["latest"], **common)
    assert (first.out, second.out) == (str(tmp_path / "mapping-mask-v1"), str(tmp_path / "mapping-mask-v2"))
    for finished in (first, second):
        assert bench.read_summary(finished.out) == finished.summary
    assert not (tmp_path / "{models}").exists()


def test_latest_is_one_row_per_registered_text_input(setup, tmp_path):
    from mm2latent.training.registry import ModelRegistry

    models = str(tmp_path / "runs")
    shutil.copytree(setup["models"], models)  # registered locations are relative: still valid
    registry = ModelRegistry(default_registry_url(models))
    v1, v2 = registry.records("mapping-mask")
    # Fabricated records of caption-trained models on the tiny networks (text kind is all that
    # differs for the benchmark): v3 captions, v4 mixed, v5 captions again (the latest captions).
    for base, text in [(v1, {"text": "captions"}), (v2, {"text": "mixed", "caption_share": 0.25}),
                       (v1, {"text": "captions"})]:
        registry.register("mapping-mask", base.checkpoint_url, base.dataset_url, base.dataset_hash,
                          base.metrics, base.config, {**base.extra, **text})
    summary = _run(_cfg(setup, str(tmp_path / "out"), models=models, versions=("latest",)))
    assert [(m.model, m.label) for m in summary.models] == [
        ("mapping-mask-v2", "trained here: mapping-mask-v2"),  # PTEG: the row name it always had
        ("mapping-mask-v5", "trained here: mapping-mask-v5 (captions)"),
        ("mapping-mask-v4", "trained here: mapping-mask-v4 (mixed, caption share 0.25)")]
    report = open(tmp_path / "out" / "report.md").read()
    assert "| **trained here: mapping-mask-v2** |" in report
    assert "| **trained here: mapping-mask-v5 (captions)** |" in report
    # A version asked by number is that one row alone, labelled by its text input.
    plan = bench.make_plan(_cfg(setup, str(tmp_path / "one"), models=models, versions=("3",)))
    assert [m.label for m in plan.models] == ["trained here: mapping-mask-v3 (captions)"]
