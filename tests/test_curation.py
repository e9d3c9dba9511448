"""Curation mechanics on fabricated datasets and attributes: balance math, determinism, the
near-duplicate index against brute force, streaming, the copied dataset, refusal and resume."""

from __future__ import annotations

import json
import weakref
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mm2latent.curation import run
from mm2latent.curation.attributes_input import read_attribute_shards
from mm2latent.curation.balance import quotas
from mm2latent.curation.dedupe import near_duplicate_keep
from mm2latent.curation.select import select
from mm2latent.curation.spec import parse_spec, spec_from_json
from mm2latent.fabricate.datasets import write_dataset
from mm2latent_core.errors import ConfigError, DatasetError
from storage.attributes import (AttributeColumnInfo, AttributeDescriptor, write_attribute_shard,
                                write_descriptor)
from storage.dataset_index import DatasetIndex, complete_shards, shard_url
from storage.derived import shard_tar_sha256
from storage.manifest import read_manifest
from storage.readers import read_vectors
from storage.samples import read_shard_members


def attribute_values(index: np.ndarray) -> dict[str, np.ndarray]:
    """Fabricated attributes, a function of the sample index alone."""
    return {"mask.face": ((index * 37) % 100) / 100.0,         # 0.00 .. 0.99
            "mask.eyeglasses": (index % 5 == 0) * 0.2,        # 'yes' for every 5th sample
            "deca.yaw_deg": ((index * 53) % 120) - 60.0}       # -60 .. 59


def write_attributes(dataset: str) -> None:
    """Attributes of every complete shard, through the storage contract (two sources)."""
    for source, names in (("mask", ["face", "eyeglasses"]), ("deca", ["yaw_deg"])):
        descriptor = AttributeDescriptor(
            source=source, version="test", digest=(source[0] * 64).replace("m", "a").replace("d", "b"),
            description="fabricated", producer={"source": source},
            columns=[AttributeColumnInfo(name=f"{source}.{n}", unit="u", description=n) for n in names])
        write_descriptor(dataset, descriptor)
        for shard in complete_shards(dataset):
            manifest = read_manifest(shard_url(dataset, shard, "parquet"), ["index", "status"])
            indices = manifest["index"].to_numpy()
            ok = np.array([s == "ok" for s in manifest["status"].to_pylist()])
            values = {k: v for k, v in attribute_values(indices).items() if k.startswith(source)}
            write_attribute_shard(dataset, descriptor, shard, indices, values, ok,
                                  shard_tar_sha256(dataset, shard))


def make_source(root: Path, name: str = "src", n_shards: int = 6, per_shard: int = 10,
                failed: frozenset[int] = frozenset({3, 17, 42})) -> str:
    url = str(root / name)
    write_dataset(url, n_shards=n_shards, per_shard=per_shard, failed=set(failed))
    write_attributes(url)
    return url


@pytest.fixture
def source(tmp_path) -> str:
    return make_source(tmp_path)


# ---- balance math -----------------------------------------------------------------------------

def test_quotas_are_exact_uniform_when_every_cell_can_fill_its_share():
    assert quotas([50, 40, 30, 20], [0.25] * 4, 80) == [20, 20, 20, 20]
    assert quotas([50, 40, 30, 20], [0.25] * 4, 82) == [21, 21, 20, 20]  # remainder by cell order


def test_a_short_cell_gives_all_it_has_and_the_others_share_the_rest_evenly():
    assert quotas([100, 100, 5], [1 / 3] * 3, 65) == [30, 30, 5]
    assert quotas([100, 12, 5], [1 / 3] * 3, 65) == [48, 12, 5]


def test_proportions_and_the_largest_exact_selection_without_n():
    assert quotas([100, 100, 100], [0.5, 0.25, 0.25], 40) == [20, 10, 10]
    assert quotas([100, 7, 100], [0.5, 0.25, 0.25], None) == [14, 7, 7]
    assert quotas([9, 9, 9], [0.5, 0.0, 0.5], None) == [9, 0, 9]
    with pytest.raises(DatasetError, match="fewer than --n 30"):
        quotas([10, 10, 5], [0.5, 0.0, 0.5], 30)


def test_selected_cells_hold_exactly_their_quotas(source):
    spec = parse_spec("""
filters: {min_face_share: 0.1, ranges: {deca.yaw_deg: [-50, 50]}}
balance:
  attributes:
    glasses: {column: mask.eyeglasses, threshold: 0.1}
    yaw: {column: deca.yaw_deg, bins: [-50, 0, 50], labels: [left, right]}
n: 12
seed: 3
""")
    selection = select(source, spec, read_attribute_shards)
    chosen = selection.source_indices
    values = attribute_values(chosen)
    glasses = values["mask.eyeglasses"] >= 0.1
    right = values["deca.yaw_deg"] >= 0
    counts = {c.key: c.selected for c in selection.cells}
    assert counts["glasses=yes,yaw=left"] == int(np.sum(glasses & ~right))
    assert counts["glasses=no,yaw=right"] == int(np.sum(~glasses & right))
    # recompute what passed the filters by hand: every cell's availability and quota
    every = np.arange(60)
    every = every[~np.isin(every, [3, 17, 42])]
    v = attribute_values(every)
    passed = every[(v["mask.face"] >= 0.1) & (np.abs(v["deca.yaw_deg"]) <= 50)]
    pv = attribute_values(passed)
    cells = (pv["mask.eyeglasses"] >= 0.1).astype(int) * 2 + (pv["deca.yaw_deg"] >= 0)
    available = [int(np.sum(cells == c)) for c in range(4)]
    assert [c.available for c in selection.cells] == available
    assert [c.selected for c in selection.cells] == quotas(available, [0.25] * 4, 12)
    assert len(chosen) == 12 and np.all(np.diff(chosen) > 0)
    assert selection.removed == {"failed": 3, "face_share": int(np.sum(v["mask.face"] < 0.1)),
                                 "ranges": len(every) - len(passed) - int(np.sum(v["mask.face"] < 0.1)),
                                 "near_duplicates": 0}


# ---- determinism ------------------------------------------------------------------------------

def test_the_choice_depends_on_the_seed_not_on_how_the_source_is_sharded(tmp_path):
    spec = parse_spec("{balance: {attributes: {g: {column: mask.eyeglasses, threshold: 0.1}}}, n: 10}")
    a = make_source(tmp_path, "a", n_shards=6, per_shard=10)
    b = make_source(tmp_path, "b", n_shards=4, per_shard=15)
    first = select(a, spec, read_attribute_shards).source_indices
    assert np.array_equal(first, select(b, spec, read_attribute_shards).source_indices)
    assert np.array_equal(first, select(a, spec, read_attribute_shards).source_indices)
    other = spec.model_copy(update={"seed": 1})
    assert not np.array_equal(first, select(a, other, read_attribute_shards).source_indices)


# ---- near-duplicates --------------------------------------------------------------------------

def brute_force_keep(vectors: np.ndarray, max_cosine: float) -> np.ndarray:
    """The keep rule on the full N x N cosine matrix."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosines = unit.astype(np.float64) @ unit.astype(np.float64).T  # (N, N)
    keep = np.zeros(len(unit), dtype=bool)
    for i in range(len(unit)):
        keep[i] = not np.any(cosines[i, :i][keep[:i]] > max_cosine)
    return keep


@pytest.mark.parametrize("max_cosine", [0.5, 0.9, 0.99])
def test_near_duplicates_match_brute_force(max_cosine, monkeypatch):
    from mm2latent.curation import dedupe

    monkeypatch.setattr(dedupe, "QUERY_BLOCK", 7)  # several query blocks
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 16))
    # planted near-copies and chains of them
    copies = base[rng.integers(0, 40, 60)] + rng.standard_normal((60, 16)) * rng.uniform(0.01, 1, (60, 1))
    vectors = rng.permutation(np.concatenate([base, copies])).astype(np.float32)
    keep = near_duplicate_keep(vectors, max_cosine)
    assert np.array_equal(keep, brute_force_keep(vectors, max_cosine))
    assert 0 < keep.sum() < len(vectors)


def test_near_duplicates_make_no_full_size_copy_of_the_vectors(monkeypatch):
    # The float64 re-check used to hold the vectors in float64 and float32 beside the index's
    # copy (about four copies); now it gathers the rows of the candidate pairs only. numpy's
    # allocations show in tracemalloc, faiss's own index (C++) does not.
    import tracemalloc

    from mm2latent.curation import dedupe

    monkeypatch.setattr(dedupe, "QUERY_BLOCK", 256)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((8192, 64)).astype(np.float32)
    vectors[1::7] = vectors[::7][:len(vectors[1::7])] + 0.01  # some duplicates to re-check
    tracemalloc.start()
    try:
        keep = near_duplicate_keep(vectors, 0.95)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert keep.sum() < len(vectors)  # duplicates were found and re-checked
    assert peak < vectors.nbytes / 4, f"peak {peak} bytes for {vectors.nbytes} bytes of vectors"


def test_dedupe_keeps_the_lower_index_of_a_pair(tmp_path):
    url = str(tmp_path / "dup")
    write_dataset(url, n_shards=2, per_shard=4)
    write_attributes(url)
    w = read_vectors(url, ("w",))["w"]
    cos = (w / np.linalg.norm(w, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T
    np.fill_diagonal(cos, -1)
    threshold = float(np.sort(cos[np.triu_indices(8, 1)])[-1]) - 1e-6  # only the closest pair
    i, j = np.unravel_index(np.argmax(cos), cos.shape)
    spec = spec_from_json({"filters": {"near_duplicates": {"vector": "w", "max_cosine": threshold}}})
    selection = select(url, spec, read_attribute_shards)
    assert selection.removed["near_duplicates"] == 1
    assert min(i, j) in selection.source_indices and max(i, j) not in selection.source_indices


# ---- streaming --------------------------------------------------------------------------------

def test_the_selection_holds_one_attribute_table_at_a_time(source):
    alive: list[weakref.ref] = []
    most = []

    def counting_reader(dataset_url, columns):
        for shard, table in read_attribute_shards(dataset_url, columns):
            most.append(sum(r() is not None for r in alive))  # tables still held by the reader
            alive.append(weakref.ref(table))
            yield shard, table
            del table

    spec = parse_spec("{filters: {min_face_share: 0.2}, balance: {attributes: {g: {column: mask.eyeglasses, threshold: 0.1}}}}")
    select(source, spec, counting_reader)
    assert len(most) == 6 and max(most) == 0


# ---- spec -------------------------------------------------------------------------------------

def test_unknown_keys_are_refused_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown key filters\.'min_face'.*min_face_share"):
        parse_spec("filters: {min_face: 0.2}")
    with pytest.raises(ConfigError, match=r"unknown key 'bin'.*valid keys there: column, threshold, bins"):
        parse_spec("balance: {attributes: {y: {column: deca.yaw_deg, bin: [0, 1]}}}")
    with pytest.raises(ConfigError, match="unknown cell"):
        parse_spec("balance: {attributes: {g: {column: c, threshold: 1}}, proportions: {g=maybe: 1}}")
    assert parse_spec("n: 5", {("n",): 7, ("filters", "ranges", "deca.yaw_deg"): [-1, 1]}).n == 7


# ---- the curated dataset ----------------------------------------------------------------------

SPEC = {"filters": {"min_face_share": 0.1},
        "balance": {"attributes": {"g": {"column": "mask.eyeglasses", "threshold": 0.1}}}, "n": 14}


def curate(source: str, out: str, spec: dict = SPEC, per_shard: int = 4) -> run.CurationPlan:
    curation, todo = run.plan(source, out, spec_from_json(spec), read_attribute_shards, per_shard)
    for shard in todo:
        run.copy_shard(curation, shard)
    run.summarize(curation, read_attribute_shards)
    return curation


def test_the_curated_dataset_copies_members_byte_for_byte_reindexed(source, tmp_path):
    out = str(tmp_path / "curated")
    curation = curate(source, out)
    chosen = curation.selection.source_indices
    index = DatasetIndex.read(out)
    assert index.num_samples == 14 and len(index.shards) == 4 and complete_shards(out) == [0, 1, 2, 3]
    assert index.parameters["source_indices"] == chosen.tolist()
    assert index.parameters["spec_sha256"] == spec_from_json(SPEC).sha256
    vectors, source_vectors = read_vectors(out, ("w", "seed")), read_vectors(source, ("w", "seed"))
    assert vectors["index"].tolist() == list(range(14))
    rows = np.searchsorted(source_vectors["index"], chosen)
    assert np.array_equal(vectors["w"], source_vectors["w"][rows])
    assert np.array_equal(vectors["seed"], source_vectors["seed"][rows])
    for new, old in ((0, chosen[0]), (13, chosen[13])):
        assert (read_shard_members(out, new // 4, [new])[new]
                == read_shard_members(source, int(old) // 10, [int(old)])[int(old)])
    report = json.loads((Path(out) / "curation.json").read_text())
    assert report["selected"] == 14 and report["removed"]["failed"] == 3
    assert [c["selected"] for c in report["cells"]] == [7, 7]
    columns = {h["column"]: h for h in report["histograms"]}
    assert set(columns) == {"mask.face", "mask.eyeglasses", "deca.yaw_deg"}
    assert sum(columns["mask.face"]["after"]) == 14 and sum(columns["mask.face"]["before"]) == 57
    assert (Path(out) / "curation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rerun_with_another_spec_or_source_is_refused_in_one_line(source, tmp_path):
    out = str(tmp_path / "curated")
    curate(source, out)
    with pytest.raises(DatasetError, match="curated from another spec") as error:
        curate(source, out, {**SPEC, "n": 10})
    assert "\n" not in str(error.value)
    other = make_source(tmp_path, "other", n_shards=3)
    with pytest.raises(DatasetError, match="curated from another source"):
        curate(other, out)


def test_an_attributes_descriptor_with_tuples_can_be_written_again(tmp_path):
    """The pipeline plans attributes twice (check, then run); a producer holding tuples (FaRL's
    prompt pairs) must compare equal to its JSON copy on disk, not refuse itself."""
    url = str(tmp_path / "d")
    write_dataset(url, n_shards=1, per_shard=2)
    descriptor = AttributeDescriptor(
        source="farl", version="1", digest="c" * 64, description="d",
        columns=[AttributeColumnInfo(name="farl.Smiling", unit="p", description="s")],
        producer={"prompts": {"Smiling": ("a smiling face", "a face")}})
    write_descriptor(url, descriptor)
    write_descriptor(url, descriptor)  # refused before: ("a", "b") != ["a", "b"]
