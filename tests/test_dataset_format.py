"""Datasets written by this version stay readable: a committed fixture read by today's code.

tests/fixtures/dataset-v1 was written by synth-data (tests/make_format_fixture.py). A change
to member names, decoders, manifest columns or dataset.json fields that breaks reading it
fails here; such a change needs a format version bump and a migration, not a new fixture.
"""

from __future__ import annotations

import tarfile

import numpy as np

from mm2latent.dataset_report import inspect_dataset, verify_dataset
from mm2latent.modalities.registry import default_registry
from mm2latent.presets import get_preset
from storage.dataset_index import DatasetIndex, shard_url
from storage.manifest import manifest_schema, read_manifest_schema
from storage.readers import iter_samples, read_vectors
from tests.make_format_fixture import FIXTURE

URL = str(FIXTURE)
MEMBERS = {"png", "mask.png", "sketch.png", "w.npy", "flame.npy", "farl.npy", "json"}


def test_fixture_files_are_intact_and_indexed():
    assert verify_dataset(URL) == [0]  # tar and parquet sha256 match the stats marker
    index = DatasetIndex.read(URL)
    assert index.vector_dims == {"w": 512, "flame": 159, "farl": 512}
    assert index.parameters["modalities"] == ["mask", "sketch", "flame", "farl"]
    with tarfile.open(FIXTURE / "shard-000000.tar") as tar:
        assert {name.split(".", 1)[1] for name in tar.getnames()} == MEMBERS


def test_every_member_of_the_fixture_decodes():
    registry = default_registry()
    (sample,) = list(iter_samples(URL, modalities=tuple(registry.member_exts()), split_by_node=False,
                                  split_by_worker=False, registry=registry))
    assert sample["key"] == "000000000" and sample["json"]["index"] == 0
    assert sample["image"].shape == (3, 8, 8) and 0 <= sample["image"].min() <= sample["image"].max() <= 1
    assert sample["mask"].shape == (8, 8) and int(sample["mask"].max()) < 19
    assert sample["sketch"].shape[0] == 1 and set(sample["sketch"].unique().tolist()) <= {0.0, 1.0}
    assert {k: tuple(sample[k].shape) for k in ("w", "flame", "farl")} == {
        "w": (512,), "flame": (159,), "farl": (512,)}
    vectors = read_vectors(URL, columns=("w", "flame", "farl"))
    for name in ("w", "flame", "farl"):  # the parquet copy equals the tar member
        np.testing.assert_array_equal(vectors[name][0], sample[name].numpy())


def test_todays_manifest_schema_is_the_fixtures():
    index = DatasetIndex.read(URL)
    registry = default_registry()
    dims = registry.vector_dims(get_preset(index.preset), index.parameters["modalities"])
    found = read_manifest_schema(shard_url(URL, 0, "parquet"))
    expected = manifest_schema(dims, registry.member_exts())
    assert [(f.name, f.type, f.nullable, f.metadata) for f in found] == [
        (f.name, f.type, f.nullable, f.metadata) for f in expected]
    assert found.metadata[b"mm2latent.manifest_version"] == expected.metadata[b"mm2latent.manifest_version"]


def test_inspect_reads_the_fixture():
    report = inspect_dataset(URL)
    assert (report.samples, report.ok, report.failed, report.decoded_samples) == (1, 1, 0, 1)
    assert set(report.vectors) == {"w", "flame", "farl"}
    assert report.image_mean is not None and report.sketch_edge_density is not None
    assert abs(sum(report.mask_class_frequency.values()) - 1) < 1e-9
