"""Bad command-line input: one line naming the problem and the fix, exit 2, nothing written."""

from __future__ import annotations

import errno

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.fabricate_storage import write_dataset


def _files(root) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(args: list[str], *expected: str) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.output  # no escaping exception
    for text in expected:
        assert text in result.output, result.output
    return result.output


@pytest.fixture
def dataset(tmp_path):
    write_dataset(str(tmp_path / "ds"), n_shards=2, per_shard=2)
    return tmp_path / "ds"


@pytest.mark.parametrize("name", ["shard-000000.tar", "dataset.json", "embeddings/x.png",
                                  "shard-000001.stats.json"])
def test_grid_never_writes_over_the_datasets_own_files(dataset, name):
    before = _files(dataset)
    _refused(["dataset", "grid", str(dataset), "--out", str(dataset / name)],
             "of the dataset at", "Fix: write the file outside the dataset")
    assert _files(dataset) == before


def test_grid_refuses_a_name_that_disagrees_with_png(dataset, tmp_path):
    _refused(["dataset", "grid", str(dataset), "--out", str(tmp_path / "grid.jpg")],
             "writes PNG", "*.png")
    assert not (tmp_path / "grid.jpg").exists()
    ok = CliRunner().invoke(app, ["dataset", "grid", str(dataset), "--out", str(dataset / "grid.png")])
    assert ok.exit_code == 0, ok.output  # beside the shards, under its own name, is fine


@pytest.mark.parametrize("args, expected", [
    (["--rows", "0"], "--rows 0: must be at least 1"),
    (["--out", "{tmp}"], "is a directory"),
])
def test_grid_bad_options(dataset, tmp_path, args, expected):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    _refused(["dataset", "grid", str(dataset), *args], expected)


def test_inspect_on_a_file_names_the_directory_to_pass(dataset):
    _refused(["dataset", "inspect", str(dataset / "shard-000000.tar")],
             "is a file, not a dataset", f"(e.g. {dataset})")


@pytest.mark.parametrize("args, expected", [
    (["--psi", "nan"], "truncation_psi (--psi) nan is not a number"),
    (["--psi", "inf"], "truncation_psi (--psi) inf is not a number"),
    (["--psi", "3"], "outside [-1, 2]"),
    (["--psi", "-1.5"], "outside [-1, 2]"),
    (["--device", "cuda"], "CUDA is not available"),
    (["--device", "tpu9"], "is not a torch device"),
    (["--modalities", ""], "modalities (--modalities) is empty"),
    (["--modalities", " , "], "modalities (--modalities) is empty"),
    (["--modalities", "mask,depth"], "unknown 'depth'"),
    (["--n", "100000001", "--samples-per-shard", "100"], "samples_per_shard (--samples-per-shard) to 101 or more"),
])
def test_synth_data_bad_values_fail_before_writing(tmp_path, args, expected):
    if "cuda" in args:
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    _refused(["synth-data", "--n", "2", "--out", str(tmp_path / "out"), *args], expected)
    assert not (tmp_path / "out").exists()


def test_synth_data_out_that_is_an_existing_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    _refused(["synth-data", "--n", "2", "--out", str(target)], "is an existing file")
    assert target.read_text() == "keep me"


def test_train_out_that_is_an_existing_file(dataset, tmp_path):
    target = tmp_path / "runs"
    target.write_text("keep me")
    _refused(["train", "autoencoders", "--dataset", str(dataset), "--out", str(target)],
             "is an existing file")
    _refused(["train", "mapping", "--dataset", str(dataset), "--out", str(tmp_path / "r"),
              "--device", "gpu"], "is not a torch device")
    assert target.read_text() == "keep me" and not (tmp_path / "r").exists()


def test_disk_full_is_one_line_that_says_how_to_resume(dataset, tmp_path, monkeypatch):
    import storage.atomic

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "g.png"))

    monkeypatch.setattr(storage.atomic, "atomic_write_bytes", full)
    _refused(["dataset", "grid", str(dataset), "--out", str(tmp_path / "g.png")],
             f"disk full while writing {tmp_path / 'g.png'}", "re-run the same command")


def test_weights_verify_fails_when_a_named_file_is_missing(tmp_path):
    result = CliRunner().invoke(app, ["weights", "verify", "farl.ep64", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "missing:" in result.output and "weights fetch farl.ep64" in result.output


def test_disk_full_during_synth_data_is_one_line_and_a_rerun_resumes(prefect_harness, tmp_path, monkeypatch):
    """ENOSPC raised inside a Prefect task reaches the CLI as one line, not a traceback."""
    import storage.dataset_index

    real = storage.dataset_index.write_manifest
    calls = {"n": 0}

    def full_on_second_shard(url, *args, **kwargs):
        calls["n"] += 1
        if "shard-000001" in url:
            raise OSError(errno.ENOSPC, "No space left on device", url)
        return real(url, *args, **kwargs)

    monkeypatch.setattr(storage.dataset_index, "write_manifest", full_on_second_shard)
    out = tmp_path / "ds"
    args = ["synth-data", "--n", "2", "--samples-per-shard", "1", "--out", str(out)]
    _refused(args, "disk full while writing", "shard-000001.parquet", "re-run the same command")
    assert (out / "shard-000000.stats.json").exists() and not (out / "shard-000001.stats.json").exists()
    monkeypatch.setattr(storage.dataset_index, "write_manifest", real)
    rerun = CliRunner().invoke(app, args)
    assert rerun.exit_code == 0 and "2 ok, 0 failed, 2 shards" in rerun.output, rerun.output
