"""mm2latent.dataset_report on hand-built datasets whose every pixel and vector is known."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
from fsspec.core import url_to_fs
from PIL import Image

from mm2latent import dataset_report
from mm2latent.dataset_report import GUTTER, GUTTER_VALUE, contact_sheet, inspect_dataset, render_report
from mm2latent_core.errors import DatasetError
from mm2latent.models.face_parser.labels import CELEBAMASK_HQ_CLASSES, colorize
from storage.dataset_index import commit_shard, complete_shards, prepare_output, shard_name, shard_url
from storage.fs import join
from storage.lease import acquire_lease
from storage.manifest import ok_row
from storage.shard_writer import TarShardWriter, sample_key
from mm2latent.fabricate.datasets import LAYOUT, make_index, make_sample, write_shard

FAILED = {1, 4}
OK = [0, 2, 3, 5]  # ok samples of the two complete shards, index order
SIZE = 8  # fabricated image side


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture
def dataset(mem_url):
    """3 planned shards of 3: shards 0 and 1 complete with samples 1 and 4 failed, 2 being
    committed by a live synth-data run (no stats file yet; it holds the dataset's lease)."""
    prepare_output(mem_url, make_index(9, 3))
    write_shard(mem_url, 0, [0, 1, 2], FAILED)
    write_shard(mem_url, 1, [3, 4, 5], FAILED)
    write_shard(mem_url, 2, [6, 7, 8])
    fs, root = url_to_fs(mem_url)
    fs.rm(join(root, shard_name(2, "stats.json")))  # no completion marker: incomplete
    acquire_lease(mem_url, "synth-data")
    return mem_url


def test_counts_failures_and_incomplete_shards(dataset, monkeypatch):
    monkeypatch.setattr(dataset_report, "MAX_ERRORS", 1)
    report = inspect_dataset(dataset)
    assert (report.preset, report.shards_planned) == ("tiny", 3)
    assert (report.shards_complete, report.shards_incomplete) == ([0, 1], [2])
    assert (report.samples, report.ok, report.failed) == (6, 4, 2)
    assert report.error_kinds == {"Boom": 2}  # counted over every failure ...
    assert report.errors == [("000000001", "Boom: x")]  # ... but only the first ones quoted
    assert report.weights == {"stylegan2.tiny": "0" * 64}
    json.dumps(dataclasses.asdict(report))  # plain JSON data, as `dataset inspect --json` prints


def test_vector_stats_cover_every_ok_row(dataset):
    report = inspect_dataset(dataset, max_decoded=0)
    assert report.decoded_samples == 0 and report.image_mean is None
    for name in ("w", "flame", "farl"):
        rows = np.stack([make_sample(i)[1][name] for i in OK]).astype(np.float64)  # (4, D)
        norms = np.linalg.norm(rows, axis=1)
        stats = report.vectors[name]
        assert (stats.count, stats.dim) == (4, rows.shape[1])
        np.testing.assert_allclose([stats.norm_mean, stats.norm_std, stats.value_mean, stats.value_std],
                                   [norms.mean(), norms.std(), rows.mean(), rows.std()], rtol=1e-6)


def test_member_stats_come_from_the_first_decoded_samples_only(dataset):
    report = inspect_dataset(dataset, max_decoded=2)
    first = [make_sample(i)[0] for i in OK[:2]]  # samples 0 and 2; 1 failed
    assert report.decoded_samples == 2
    images = np.stack([_png(m["png"]) for m in first]) / 255.0  # (2, H, W, 3)
    np.testing.assert_allclose(report.image_mean, images.mean(axis=(0, 1, 2)), rtol=1e-6)
    masks = np.stack([_png(m["mask.png"]) for m in first])  # (2, H, W)
    counts = np.bincount(masks.ravel(), minlength=19) / masks.size
    assert report.mask_class_frequency == pytest.approx(dict(zip(CELEBAMASK_HQ_CLASSES, counts)))
    sketches = np.stack([_png(m["sketch.png"]) for m in first])
    assert report.sketch_edge_density == pytest.approx((sketches == 255).mean())


def test_contact_sheet_rows_are_image_mask_sketch_of_ok_samples(dataset):
    sheet = contact_sheet(dataset, n_rows=3)
    step = SIZE + GUTTER
    assert sheet.dtype == np.uint8 and sheet.shape == (3 * SIZE + 2 * GUTTER, 3 * SIZE + 2 * GUTTER, 3)
    for row, index in enumerate(OK[:3]):
        members = make_sample(index)[0]
        tiles = [sheet[row * step:row * step + SIZE, col * step:col * step + SIZE] for col in range(3)]
        assert np.array_equal(tiles[0], _png(members["png"]))
        assert np.array_equal(tiles[1], colorize(_png(members["mask.png"])))
        assert np.array_equal(tiles[2], np.repeat(_png(members["sketch.png"])[:, :, None], 3, axis=2))
    assert (sheet[SIZE:SIZE + GUTTER] == GUTTER_VALUE).all()
    assert (sheet[:, SIZE:SIZE + GUTTER] == GUTTER_VALUE).all()
    assert contact_sheet(dataset, n_rows=50).shape[0] == 4 * SIZE + 3 * GUTTER  # only 4 ok samples


def test_render_report_names_counts_failures_and_the_fix(dataset):
    text = render_report(inspect_dataset(dataset))
    for expected in ("6 (4 ok, 2 failed)", "000000004: Boom: x", "incomplete shards: 2",
                     "re-run the same synth-data command", "2 complete of 3 planned", "w (16)"):
        assert expected in text


def test_dataset_without_mask_and_sketch_members(mem_url):
    prepare_output(mem_url, make_index(2, 2))
    rows = []
    with TarShardWriter(shard_url(mem_url, 0)) as writer:
        for index in range(2):
            members, vectors = make_sample(index)
            del members["mask.png"], members["sketch.png"]
            writer.write(members, sample_key(index))
            rows.append((index, vectors))
    result = writer.close()
    commit_shard(mem_url, 0, result, [ok_row(key=sample_key(i), index=i, shard=0, seed=i,
                                             members=result.members[sample_key(i)], vectors=v,
                                             layout=LAYOUT)
                                      for i, v in rows], {}, make_index(2, 2).vector_dims, LAYOUT)
    report = inspect_dataset(mem_url)
    assert report.decoded_samples == 2 and report.image_mean is not None
    assert report.mask_class_frequency == {} and report.sketch_edge_density is None
    sheet = contact_sheet(mem_url, n_rows=1)
    assert np.array_equal(sheet[:, :SIZE], _png(make_sample(0)[0]["png"]))
    for col in (1, 2):  # black mask and sketch tiles
        assert (sheet[:, col * (SIZE + GUTTER):col * (SIZE + GUTTER) + SIZE] == 0).all()


def test_not_a_dataset_and_nothing_complete(mem_url):
    with pytest.raises(DatasetError, match="dataset.json: not found"):
        inspect_dataset(mem_url)
    prepare_output(mem_url, make_index(4, 2))
    report = inspect_dataset(mem_url)
    assert (report.samples, report.shards_complete, report.shards_incomplete) == (0, [], [0, 1])
    with pytest.raises(DatasetError, match="no complete shards"):
        contact_sheet(mem_url)
    with pytest.raises(ValueError, match="n_rows"):
        contact_sheet(mem_url, n_rows=0)


def test_a_first_shard_with_only_failures_is_skipped(mem_url):
    prepare_output(mem_url, make_index(4, 2))
    write_shard(mem_url, 0, [0, 1], failed={0, 1})
    write_shard(mem_url, 1, [2, 3])
    report = inspect_dataset(mem_url)
    assert (report.ok, report.failed, report.decoded_samples) == (2, 2, 2)
    assert report.sketch_edge_density is not None
    sheet = contact_sheet(mem_url, n_rows=1)
    assert np.array_equal(sheet[:, :SIZE], _png(make_sample(2)[0]["png"]))


def test_verify_rehashes_every_complete_shard(dataset):
    assert dataset_report.verify_dataset(dataset) == complete_shards(dataset)
    fs, path = url_to_fs(shard_url(dataset, 1, "tar"))
    data = bytearray(fs.cat_file(path))
    data[700] ^= 0xFF  # one flipped byte inside the first member's payload
    fs.pipe_file(path, bytes(data))
    with pytest.raises(DatasetError, match="shard 1: shard-000001.tar has another sha256"):
        dataset_report.verify_dataset(dataset)
