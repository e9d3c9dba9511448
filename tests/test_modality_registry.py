"""A modality defined only here is generated, stored, read back, inspected and trained on.

This is the registry's proof: MEAN_COLOUR lives in this file, no project file names it, and
synth-data, the shard writer, the manifest, storage.readers, `dataset inspect`, MappingNet
training and inference input checks all handle it because they iterate the registry they are
given. The registry pickles, so it also reaches DataLoader workers started with `spawn`.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mm2latent.dataset_report import inspect_dataset, render_report
from mm2latent.errors import ConfigError, ParameterError
from mm2latent.inference import check_condition, check_modality
from mm2latent.modalities.codecs import vector_codec
from mm2latent.modalities.network_input import VectorInput
from mm2latent.modalities.registry import default_registry
from mm2latent.modalities.spec import Annotation, ModalitySpec, SynthBatch
from mm2latent.presets import get_preset
from mm2latent.synth import run
from mm2latent.synth.params import parse_params
from mm2latent.training.config import MappingTrainCfg
from mm2latent.training.mapping import load_mapping_net, mapping_net_cfg, train_mapping
from storage.manifest import read_manifest
from storage.readers import iter_samples, read_vectors


def _mean_colour(_annotator: None, batch: SynthBatch) -> Annotation:
    return Annotation(batch.images01.mean(dim=(2, 3)).cpu().numpy())  # (B, 3) RGB in [0, 1]


class _Brightest:
    """Toy statistic: the largest channel mean seen."""

    def __init__(self) -> None:
        self.top: float | None = None

    def add(self, value: torch.Tensor) -> None:
        self.top = max(self.top or 0.0, float(value.max()))

    def result(self) -> float | None:
        return self.top

    def render(self, result: float | None) -> str | None:
        return None if result is None else f"mean_colour brightest channel: {result:.4f}"


def _three(_preset) -> int:
    return 3  # R, G, B


_encode, _decode = vector_codec("mean_colour")
# Module-level functions and classes only (no lambdas), so the registry pickles.
MEAN_COLOUR = ModalitySpec(name="mean_colour", exts=("mean_colour.npy",), encode=_encode,
                           decode=_decode, annotate=_mean_colour, vector_dim=_three,
                           stats=_Brightest,
                           network_input=VectorInput(name="mean_colour", dim=3,
                                                     about="mean R, G, B in [0, 1]"))


def _synth(out: Path, n_samples: int, samples_per_shard: int, modalities: tuple[str, ...]):
    """(params, registry) of a tiny synth-data run into `out` with the toy modality registered."""
    registry = default_registry().with_spec(MEAN_COLOUR)
    params = parse_params(registry=registry, preset="tiny", n_samples=n_samples,
                          samples_per_shard=samples_per_shard, image_size=16,
                          modalities=modalities, out=str(out))
    for shard in run.plan(params, registry=registry):
        run.run_shard(params, shard, registry=registry)
    return params, registry


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory) -> tuple[str, object]:
    """A 3-sample tiny dataset (2 shards) storing sketch and the toy modality."""
    out = tmp_path_factory.mktemp("toy")
    params, registry = _synth(out, 3, 2, ("mean_colour", "sketch"))
    assert params.modalities == ("sketch", "mean_colour")  # registry order
    assert run.summarize(params).ok == 3
    return str(out), registry


def test_the_default_registry_does_not_know_the_toy():
    assert "mean_colour" not in default_registry()  # nothing was registered globally
    with pytest.raises(ParameterError, match="modalities \\(--modalities\\): unknown 'mean_colour'"):
        parse_params(modalities=("mean_colour",))


def test_toy_modality_is_written_to_tar_and_parquet(toy_dataset):
    url, _ = toy_dataset
    with tarfile.open(Path(url) / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert "000000000.mean_colour.npy" in names and "000000000.mask.png" not in names
    table = read_manifest(str(Path(url) / "shard-000000.parquet"))
    assert table["mean_colour_bytes"].null_count == 0 and table["mask_bytes"].null_count == 2
    vectors = read_vectors(url, columns=("mean_colour",))
    assert vectors["mean_colour"].shape == (3, 3)


def test_toy_modality_reads_back_equal_to_the_image_mean(toy_dataset):
    url, registry = toy_dataset
    samples = list(iter_samples(url, modalities=("image", "mean_colour"), split_by_node=False,
                                split_by_worker=False, registry=registry))
    assert [s["index"] for s in samples] == [0, 1, 2]
    parquet = read_vectors(url, columns=("mean_colour",))["mean_colour"]
    for sample, row in zip(samples, parquet):
        np.testing.assert_allclose(sample["mean_colour"].numpy(), sample["image"].mean(dim=(1, 2)).numpy(),
                                   rtol=1e-5)
        np.testing.assert_array_equal(sample["mean_colour"].numpy(), row)


def test_dataset_inspect_shows_the_toy_modality(toy_dataset):
    url, registry = toy_dataset
    report = inspect_dataset(url, registry=registry)
    assert report.vectors["mean_colour"].dim == 3 and report.vectors["mean_colour"].count == 3
    assert report.decoded["mean_colour"] == pytest.approx(
        max(float(v.max()) for v in read_vectors(url, columns=("mean_colour",))["mean_colour"]))
    text = render_report(report, registry)
    assert "mean_colour (3)" in text and "mean_colour brightest channel" in text


@pytest.fixture(scope="module")
def toy_condition_dataset(tmp_path_factory) -> tuple[str, object]:
    """A 6-sample tiny dataset with FaRL embeddings and the toy modality (MappingNet inputs)."""
    out = tmp_path_factory.mktemp("toy_condition")
    _, registry = _synth(out, 6, 3, ("farl", "mean_colour"))
    return str(out), registry


def test_registries_pickle_and_work_after_unpickling():
    extended = default_registry().with_spec(MEAN_COLOUR)
    for registry in (default_registry(), extended):
        clone = pickle.loads(pickle.dumps(registry))
        assert clone.names == registry.names and clone.conditions == registry.conditions
        vector = np.array([0.25, 0.5, 0.75], dtype=np.float32)
        for name in ("w", "flame", "farl"):
            ext, payload = clone.get(name).encode(vector, "png")
            assert ext == f"{name}.npy"
            np.testing.assert_array_equal(clone.get(name).decode(payload).numpy(), vector)
        labels = torch.tensor([[0, 18], [3, 1]])
        assert clone.map_input("mask").resize(labels, 4).shape == (4, 4)
        assert clone.condition("flame").check(np.zeros(159, np.float32)).shape == (1, 159)
    clone = pickle.loads(pickle.dumps(extended))
    assert clone.conditions == ("mask", "sketch", "flame", "mean_colour")
    assert clone.get("mean_colour").vector_dim(None) == 3


def test_toy_modality_decodes_in_a_spawned_dataloader_worker(toy_dataset):
    url, registry = toy_dataset
    samples = iter_samples(url, modalities=("mean_colour",), split_by_node=False,
                           split_by_worker=True, registry=registry)
    # spawn pickles the pipeline, registry included, into a fresh interpreter.
    loader = DataLoader(samples, batch_size=None, num_workers=1, multiprocessing_context="spawn")
    got = {int(s["index"]): s["mean_colour"].numpy() for s in loader}
    parquet = read_vectors(url, columns=("mean_colour",))
    assert sorted(got) == parquet["index"].tolist() == [0, 1, 2]
    for index, row in zip(parquet["index"], parquet["mean_colour"]):
        np.testing.assert_array_equal(got[int(index)], row)


def test_the_toy_vector_conditions_a_mapping_net(toy_condition_dataset, tmp_path):
    url, registry = toy_condition_dataset
    with pytest.raises(ConfigError, match="choose one of mask, sketch, flame\\."):
        MappingTrainCfg(modality="mean_colour")  # the default registry does not know it
    cfg = MappingTrainCfg(modality="mean_colour", modality_registry=registry, epochs=2,
                          batch_size=3, val_fraction=0.0)
    assert cfg.to_dict() == MappingTrainCfg(modality="mean_colour", modality_registry=registry,
                                            epochs=2, batch_size=3, val_fraction=0.0).to_dict()
    assert "modality_registry" not in cfg.to_dict()  # specs are code, not a training setting
    net_cfg = mapping_net_cfg(get_preset("tiny").mapping, "mean_colour", registry=registry)
    assert net_cfg.spatial_dim == 3
    summary = train_mapping(url, str(tmp_path / "run"), net_cfg, cfg, embeddings_version="unused")
    assert summary.finished and summary.num_samples == 6
    assert summary.embeddings_version is None  # a vector condition reads its manifest column
    net = load_mapping_net(summary.checkpoint_url)
    condition = check_condition("mean_colour", np.array([0.2, 0.4, 0.6]), registry)  # (1, 3)
    text = torch.nn.functional.normalize(torch.randn(1, net.cfg.text_dim), dim=1)
    assert net(text, condition).shape == (1, net.cfg.w_dim)


def test_inference_checks_list_the_registry_conditions():
    registry = default_registry().with_spec(MEAN_COLOUR)
    assert check_modality("mean_colour", registry) == "mean_colour"
    with pytest.raises(ConfigError, match="choose one of mask, sketch, flame\\."):
        check_modality("mean_colour")
    with pytest.raises(ConfigError, match="choose one of mask, sketch, flame, mean_colour"):
        check_modality("depth", registry)
    with pytest.raises(ConfigError, match=r"mean_colour must be \(3,\) or \(B, 3\) \(mean R"):
        check_condition("mean_colour", np.zeros(4), registry)
