"""The `synth-data` Prefect flow end to end on memory://, under the session's test harness."""

from __future__ import annotations

import threading

import pytest
from fsspec.core import url_to_fs

from flows.synth_data import synth_data
from mm2latent.dataset_report import inspect_dataset
from mm2latent.errors import MissingWeightsError, ParameterError
from mm2latent.models.face_parser.base import ParseResult
from mm2latent.synth import shard
from mm2latent.synth.params import parse_params
from storage.dataset_index import read_shard_stats, shard_url
from storage.fs import join
from storage.manifest import read_manifest

NO_FACE = {1, 3}  # sample indices whose parse is forced to all-background


@pytest.fixture
def no_face_for_some(monkeypatch):
    """Make the face parser return an all-background parse for NO_FACE; count batches run."""
    real = shard.synthesize_batch
    calls = {"batches": 0}
    lock = threading.Lock()

    def synthesize(models, dataset_seed, indices, *args, **kwargs):
        real_parse = models.annotators["mask"].parse  # models are shared across shards: restored below

        def parse(images):
            result = real_parse(images)
            labels, fraction = result.labels.clone(), result.face_fraction.clone()
            for j, index in enumerate(indices):  # rows past len(indices) are padding
                if index in NO_FACE:
                    labels[j] = 0
                    fraction[j] = 0.0
            return ParseResult(labels=labels, face_fraction=fraction)

        with lock:
            calls["batches"] += 1
            models.annotators["mask"].parse = parse
            try:
                return real(models, dataset_seed, indices, *args, **kwargs)
            finally:
                models.annotators["mask"].parse = real_parse

    monkeypatch.setattr(shard, "synthesize_batch", synthesize)
    return calls


def _files(url: str) -> dict[str, bytes]:
    fs, root = url_to_fs(url)
    return {p.rsplit("/", 1)[-1]: fs.cat_file(p) for p in sorted(fs.ls(root, detail=False))}


def test_flow_on_memory_records_failed_annotations_and_resumes(prefect_harness, mem_url,
                                                               no_face_for_some):
    params = parse_params(preset="tiny", n_samples=5, samples_per_shard=3, seed=1, out=mem_url)
    summary = synth_data(params)
    assert (summary.samples, summary.ok, summary.failures, summary.shards) == (5, 3, 2, 2)
    assert summary.makes_faces is False
    assert no_face_for_some["batches"] == 2

    rows = []
    for index in range(2):
        rows += read_manifest(shard_url(mem_url, index, "parquet")).to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["index"] for r in failed] == sorted(NO_FACE)
    for row in failed:
        assert row["error"].startswith("NoFaceFound:")
        assert row["w"] is None and row["image_sha256"] is None and row["image_ext"] is None
    assert [read_shard_stats(mem_url, i).failures for i in range(2)] == [1, 1]
    names = _files(mem_url)
    tar_names = b"".join(names[f"shard-00000{i}.tar"] for i in range(2))
    for index in range(5):  # failed samples have no tar members at all
        assert (f"{index:09d}.".encode() in tar_names) == (index not in NO_FACE)

    report = inspect_dataset(mem_url)  # the report agrees with the flow's counts
    assert (report.ok, report.failed, report.error_kinds) == (3, 2, {"NoFaceFound": 2})

    # Rerunning the same command skips every complete shard and changes nothing.
    assert synth_data(params) == summary
    assert no_face_for_some["batches"] == 2
    assert _files(mem_url) == names


@pytest.mark.parametrize("overrides, error, match", [
    ({"n_samples": 0}, ParameterError, "n_samples"),
    ({"samples_per_shard": 0}, ParameterError, "samples_per_shard"),
    ({"preset": "nope"}, ParameterError, "Unknown preset 'nope'"),
    ({"preset": "ffhq"}, MissingWeightsError, "mm2latent weights fetch"),
])
def test_flow_rejects_bad_parameters_before_writing(prefect_harness, mem_url, no_face_for_some,
                                                    overrides, error, match):
    # Fields as a deployment gives them (JSON): Prefect validates them into SynthDataParams.
    with pytest.raises(error, match=match):
        synth_data({"preset": "tiny", "n_samples": 2, "out": mem_url} | overrides)
    fs, root = url_to_fs(mem_url)
    assert not fs.exists(join(root, "dataset.json")) and not fs.exists(root)
    assert no_face_for_some["batches"] == 0


def test_progress_counts_resumed_samples_first_then_batches(prefect_harness, mem_url):
    params = parse_params(preset="tiny", n_samples=5, samples_per_shard=3, batch_size=2, out=mem_url)
    calls: list[int] = []
    synth_data(params, on_progress=calls.append)
    assert calls[0] == 0 and sum(calls) == 5 and len(calls) == 1 + 3  # batches 2+1, 2
    resumed: list[int] = []
    synth_data(params, on_progress=resumed.append)
    assert resumed == [5]
