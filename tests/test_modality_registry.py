"""A modality defined only here is generated, stored, read back and inspected.

This is the registry's proof: MEAN_COLOUR lives in this file, no project file names it, and
synth-data, the shard writer, the manifest, storage.readers and `dataset inspect` all handle
it because they iterate the registry they are given.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mm2latent.dataset_report import inspect_dataset, render_report
from mm2latent.errors import ParameterError
from mm2latent.modalities.codecs import vector_codec
from mm2latent.modalities.registry import default_registry
from mm2latent.modalities.spec import Annotation, ModalitySpec, SynthBatch
from mm2latent.synth import run
from mm2latent.synth.params import parse_params
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


_encode, _decode = vector_codec("mean_colour")
MEAN_COLOUR = ModalitySpec(name="mean_colour", exts=("mean_colour.npy",), encode=_encode,
                           decode=_decode, annotate=_mean_colour, vector_dim=lambda _preset: 3,
                           stats=_Brightest)


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory) -> tuple[str, object]:
    """A 3-sample tiny dataset (2 shards) storing sketch and the toy modality."""
    out = tmp_path_factory.mktemp("toy")
    registry = default_registry().with_spec(MEAN_COLOUR)
    params = parse_params(registry=registry, preset="tiny", n_samples=3, samples_per_shard=2,
                          image_size=16, modalities=("mean_colour", "sketch"), out=str(out))
    assert params.modalities == ("sketch", "mean_colour")  # registry order
    for shard in run.plan(params, registry=registry):
        run.run_shard(params, shard, registry=registry)
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
