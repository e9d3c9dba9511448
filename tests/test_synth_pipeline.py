"""synth-data at library level (run.plan / run.run_shard, no Prefect): determinism, resume,
refusal of mismatched reuse, fail-fast parameter checks and the documented member formats.

Every run uses the `tiny` preset and a handful of samples; the runs below are sized to keep
the number of batches small.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mm2latent.dataset_report import inspect_dataset
from mm2latent_core.errors import DatasetError, MissingWeightsError, ParameterError
from mm2latent.modalities.registry import default_registry
from mm2latent.synth import run, shard
from mm2latent.synth.params import parse_params
from mm2latent.synth.stages import sample_seed
from storage.dataset_index import shard_name
from storage.manifest import read_manifest
from storage.readers import iter_samples

N = 6  # samples of the reference dataset: shards of 4 and 2 at samples_per_shard 4
SEED = 3
REFERENCE = dict(preset="tiny", n_samples=N, samples_per_shard=4, batch_size=16, seed=SEED)
# Upstream first, so that a list of differing members starts where the difference arose.
MEMBER_ORDER = ("png", "mask.png", "sketch.png", "w.npy", "flame.npy", "farl.npy", "json")
MEMBER_EXTS = set(MEMBER_ORDER)
ALL_DECODED = ("image", "mask", "sketch", "w", "flame", "farl", "json")


def make_params(out: Path | str, **overrides: object):
    """SynthDataParams of the reference run with `overrides`, writing to `out`."""
    return parse_params(**(REFERENCE | {"out": str(out)} | overrides))


def run_all(params) -> list[int]:
    """Plan and write every pending shard; return the shards that were written."""
    todo = run.plan(params)
    for index in todo:
        run.run_shard(params, index)
    return todo


def tar_members(root: Path) -> dict[str, dict[str, bytes]]:
    """key -> extension -> raw payload over every shard tar under `root`."""
    members: dict[str, dict[str, bytes]] = {}
    for path in sorted(root.glob("shard-*.tar")):
        with tarfile.open(path) as tar:
            for info in tar.getmembers():
                key, ext = info.name.split(".", 1)
                members.setdefault(key, {})[ext] = tar.extractfile(info).read()
    return members


def manifest_rows(root: Path) -> dict[str, dict]:
    """key -> manifest row (without the 'shard' column, which depends on the shard size)."""
    rows = {}
    for path in sorted(root.glob("shard-*.parquet")):
        for row in read_manifest(str(path)).to_pylist():
            row.pop("shard")
            rows[row["key"]] = row
    return rows


def decoded(root: Path) -> dict[str, dict]:
    """key -> decoded sample (every modality) through storage.readers.iter_samples."""
    samples = iter_samples(str(root), modalities=ALL_DECODED, split_by_node=False, split_by_worker=False,
                           registry=default_registry())
    return {s["key"]: s for s in samples}


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """name -> (bytes, mtime_ns) of every file under `root`, dot files included."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.iterdir())}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted reference dataset: N samples, shards of 4, batch 16."""
    root = tmp_path_factory.mktemp("reference")
    assert run_all(make_params(root)) == [0, 1]
    return root


# ---------------------------------------------------------------------------------------------
# Determinism


# Plain batched forward passes are not batch-invariant (a pixel flipping by one level changes
# every annotation downstream): the stages run their networks under batching.invariant_forward.
@pytest.mark.parametrize("samples_per_shard, batch_size, n_samples", [
    (7, 3, N), (4, 1, 2)])
def test_samples_do_not_depend_on_shard_or_batch_size(reference, tmp_path, samples_per_shard,
                                                      batch_size, n_samples):
    run_all(make_params(tmp_path, samples_per_shard=samples_per_shard, batch_size=batch_size,
                        n_samples=n_samples))
    expected, got = tar_members(reference), tar_members(tmp_path)
    assert sorted(got) == [f"{i:09d}" for i in range(n_samples)]
    assert all(set(members) == MEMBER_EXTS for members in got.values())
    differing = [f"{key}.{ext}" for key in got for ext in MEMBER_ORDER if got[key][ext] != expected[key][ext]]
    assert differing == []  # raw bytes of every member of every sample
    rows, expected_rows = manifest_rows(tmp_path), manifest_rows(reference)
    assert all(rows[key] == expected_rows[key] for key in rows)  # vectors, seeds, digests
    ref_samples, samples = decoded(reference), decoded(tmp_path)
    for key, sample in samples.items():
        for modality in ("image", "mask", "sketch", "w", "flame", "farl"):
            assert torch.equal(sample[modality], ref_samples[key][modality]), f"{key} {modality}"
        assert sample["json"] == ref_samples[key]["json"]


def test_samples_differ_from_each_other(reference):
    # Guards the determinism test against a pipeline that writes the same sample every time.
    samples = decoded(reference)
    for modality in ("image", "w", "flame", "farl"):
        assert not torch.equal(samples["000000000"][modality], samples["000000001"][modality])
    assert not torch.equal(samples["000000000"]["sketch"], samples["000000001"]["sketch"])


# ---------------------------------------------------------------------------------------------
# Resume


def _fail_on_call(monkeypatch, k: int) -> None:
    """Make the k-th encoded sample of the run raise, as a crash in the middle of a shard."""
    real = shard.encode_members
    calls = {"n": 0}

    def encode(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            raise RuntimeError("injected failure")
        return real(*args, **kwargs)

    monkeypatch.setattr(shard, "encode_members", encode)


def _without_durations(stats_bytes: bytes) -> dict:
    stats = json.loads(stats_bytes)
    stats.pop("durations_s")
    return stats


def assert_same_files(root: Path, reference: Path) -> dict[str, tuple[bytes, int]]:
    """Same file names (no temp files left) and bytes as `reference`; returns root's snapshot.

    Stats files hold measured durations, so they are compared without them.
    """
    after, expected = snapshot(root), snapshot(reference)
    assert sorted(after) == sorted(expected)
    for name, (data, _) in after.items():
        if name.endswith(".stats.json"):
            assert _without_durations(data) == _without_durations(expected[name][0]), name
        else:
            assert data == expected[name][0], f"{name} differs from the uninterrupted run"
    return after


def test_resume_after_a_crash_mid_shard_is_byte_identical(reference, tmp_path, monkeypatch):
    params = make_params(tmp_path)
    with monkeypatch.context() as patch:
        _fail_on_call(patch, 6)  # the 2nd sample of shard 1
        todo = run.plan(params)
        run.run_shard(params, todo[0])
        with pytest.raises(RuntimeError, match="injected failure"):
            run.run_shard(params, todo[1])
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"dataset.json", *(shard_name(0, s) for s in ("tar", "parquet", "stats.json"))}
    # What a kill -9 at other moments leaves: a temp file mid-write, and a committed tar and a
    # corrupt parquet without the stats marker. All of it must be redone, not trusted.
    (tmp_path / f".{shard_name(1)}.tmp-{'0' * 32}").write_bytes(b"partial")
    (tmp_path / shard_name(1)).write_bytes(b"truncated tar")
    (tmp_path / shard_name(1, "parquet")).write_bytes(b"not parquet")
    shard0 = {n: v for n, v in snapshot(tmp_path).items() if n.startswith("shard-000000")}

    assert run_all(params) == [1]  # the complete shard 0 is skipped

    after = assert_same_files(tmp_path, reference)
    assert all(after[n] == shard0[n] for n in shard0)  # shard 0 neither rewritten nor touched


# A child process that runs the reference parameters and SIGKILLs itself while encoding sample k
# (argv: params JSON, k): no exception handler, finally block or atexit hook gets to clean up.
_KILLED_CHILD = """
import json, os, signal, sys
from mm2latent.synth import run, shard
from mm2latent.synth.params import parse_params
real, calls = shard.encode_members, [0]
def encode(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
shard.encode_members = encode
params = parse_params(**json.loads(sys.argv[1]))
for index in run.plan(params):
    run.run_shard(params, index)
"""


def test_resume_after_kill_9_mid_shard_is_byte_identical(reference, tmp_path):
    params = make_params(tmp_path)
    child = subprocess.run([sys.executable, "-c", _KILLED_CHILD, params.model_dump_json(), "6"],
                           cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                           timeout=300, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    names = {p.name for p in tmp_path.iterdir()}
    assert not any(n.startswith("shard-000001") for n in names)  # the killed shard left ...
    assert any(n.startswith(f".{shard_name(1)}.tmp-") for n in names)  # ... only its temp tar

    assert run_all(params) == [1]

    assert_same_files(tmp_path, reference)


# ---------------------------------------------------------------------------------------------
# Reuse of an existing dataset


@pytest.mark.parametrize("override, field", [({"seed": SEED + 1}, "parameters.seed"),
                                             ({"truncation_psi": 0.5}, "parameters.truncation_psi")])
def test_rerun_with_other_parameters_is_refused_and_touches_nothing(reference, override, field):
    before = snapshot(reference)
    with pytest.raises(DatasetError) as info:
        run.plan(make_params(reference, **override))
    message = str(info.value)
    assert field in message and "--overwrite" in message and "--out" in message
    assert snapshot(reference) == before


def test_rerun_with_other_weights_is_refused(reference, monkeypatch):
    real = run.weight_digests

    def other_generator(*args, **kwargs):
        return real(*args, **kwargs) | {"generator": "f" * 64}

    monkeypatch.setattr(run, "weight_digests", other_generator)
    before = snapshot(reference)
    with pytest.raises(DatasetError, match="weights.generator"):
        run.plan(make_params(reference))
    assert snapshot(reference) == before


def test_rerun_with_the_same_content_parameters_resumes(reference, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(reference, root)
    # batch size and device do not change the samples: nothing to redo.
    assert run.plan(make_params(root, batch_size=2)) == []
    # Growing the dataset redoes only the previously short last shard (and adds new ones).
    assert run.plan(make_params(root, n_samples=9)) == [1, 2]


# ---------------------------------------------------------------------------------------------
# Fail fast


@pytest.mark.parametrize("values, field", [({"n_samples": 0}, "n_samples"),
                                           ({"samples_per_shard": 0}, "samples_per_shard"),
                                           ({"batch_size": -1}, "batch_size"),
                                           ({"modalities": ("mask", "depth")}, "modalities")])
def test_bad_parameters_raise_parameter_error_naming_the_field(values, field, tmp_path):
    with pytest.raises(ParameterError, match=field):
        make_params(tmp_path / "out", **values)
    assert not (tmp_path / "out").exists()


def test_unknown_preset_fails_before_any_file(tmp_path):
    with pytest.raises(ParameterError, match=r"'nope'.*ffhq, ffhq-official, tiny"):
        run.plan(make_params(tmp_path / "out", preset="nope"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["under_a_file", "unknown_protocol"])
def test_unwritable_output_fails_before_any_file(tmp_path, kind):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    out = str(blocker / "ds") if kind == "under_a_file" else "nosuchproto://bucket/ds"
    with pytest.raises(DatasetError, match="nosuchproto|cannot write|not writable"):
        run.plan(make_params(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_missing_official_weights_fail_before_any_work(tmp_path):
    # conftest points MM2LATENT_CACHE at an empty directory.
    with pytest.raises(MissingWeightsError, match="mm2latent weights fetch stylegan2.ffhq1024-nvidia"):
        run.plan(make_params(tmp_path / "out", preset="ffhq"))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Formats


def test_members_have_the_documented_formats(reference):
    raw, rows = tar_members(reference), manifest_rows(reference)
    for key, members in raw.items():
        assert len(key) == 9 and key.isdigit()
        assert set(members) == MEMBER_EXTS
        with Image.open(io.BytesIO(members["png"])) as im:
            assert (im.format, im.mode, im.size) == ("PNG", "RGB", (64, 64))
        for ext in ("mask.png", "sketch.png"):
            with Image.open(io.BytesIO(members[ext])) as im:
                assert (im.mode, im.size) == ("L", (64, 64))
        sketch = np.asarray(Image.open(io.BytesIO(members["sketch.png"])))
        assert set(np.unique(sketch)) <= {0, 255}
        for name, dim in (("w", 512), ("flame", 159), ("farl", 512)):
            array = np.load(io.BytesIO(members[f"{name}.npy"]), allow_pickle=False)
            assert array.dtype == np.float32 and array.shape == (dim,)
            assert np.array_equal(array, np.asarray(rows[key][name], dtype=np.float32))
        meta = json.loads(members["json"])
        index = int(key)
        assert meta["index"] == index and meta["dataset_seed"] == SEED
        assert meta["sample_seed"] == sample_seed(SEED, index) == rows[key]["seed"]
        assert meta["truncation_psi"] == 0.7 and meta["preset"] == "tiny"
        assert set(meta["weights"]) == {"generator", "parser", "deca", "farl"}


def test_reader_decodes_documented_dtypes_and_shapes(reference):
    samples = decoded(reference)
    assert sorted(samples) == [f"{i:09d}" for i in range(N)]
    for sample in samples.values():
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 64, 64)
        assert 0 <= sample["image"].min() and sample["image"].max() <= 1
        assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (64, 64)
        assert int(sample["mask"].max()) < 19
        assert sample["sketch"].shape == (1, 64, 64)
        assert set(sample["sketch"].unique().tolist()) <= {0.0, 1.0}
        for name, dim in (("w", 512), ("flame", 159), ("farl", 512)):
            assert sample[name].dtype == torch.float32 and sample[name].shape == (dim,)
        # FaRL embeddings are stored L2-normalised.
        assert abs(float(sample["farl"].norm()) - 1.0) < 1e-5


def test_a_subset_of_modalities_writes_only_those_members(tmp_path):
    params = make_params(tmp_path, n_samples=1, modalities=("sketch",))
    run_all(params)
    assert set(tar_members(tmp_path)["000000000"]) == {"png", "sketch.png", "w.npy", "json"}
    row = manifest_rows(tmp_path)["000000000"]
    assert "flame" not in row and "farl" not in row and row["mask_bytes"] is None
    report = inspect_dataset(str(tmp_path))
    assert set(report.vectors) == {"w"} and report.ok == 1
    assert report.mask_class_frequency == {} and report.sketch_edge_density is not None
