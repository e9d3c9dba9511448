"""Every reader checks what it reads (issue 24): damage, edits and bad paths get one line, exit 2.

One small dataset is fabricated per module; each test damages its own copy. One CLI case per
kind of damage runs the installed `mm2latent` in a subprocess, as a user would; variations of
the same case run the same CLI in process (typer's CliRunner), which is much faster.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from mm2latent_core.errors import ConfigError, DatasetError
from mm2latent.conditions import load_condition
from mm2latent.fabricate.datasets import write_dataset
from mm2latent.training.snapshot import take_snapshot
from storage.embeddings import embedding_source, embeddings_url, read_embedding_table, write_embedding_table
from storage.reference_images import scan_reference
from tests.prefect_homes import copy_prefect_home

CLI = str(Path(sys.executable).with_name("mm2latent"))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "ds"
    write_dataset(str(root), n_shards=2, per_shard=2)
    return root


@pytest.fixture
def ds(pristine, tmp_path) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture(scope="module")
def env(tmp_path_factory, migrated_prefect_db) -> dict:
    home = copy_prefect_home(migrated_prefect_db, tmp_path_factory.mktemp("prefect-home"))
    return {**os.environ, "PREFECT_HOME": str(home), "COLUMNS": "400"}


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


def _refused(env: dict, *args: str) -> str:
    """Run the CLI in a subprocess; assert exit 2, an error line, no traceback; return stderr."""
    result = _run(env, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    assert "error:" in result.stderr, output
    return result.stderr


def _refused_here(*args: str) -> str:
    """The same, in process: exit 2 through SystemExit (no exception escaped); return the output."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.output
    assert "error:" in result.output, result.output
    return result.output


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_index(ds: Path) -> None:
    index = json.loads((ds / "dataset.json").read_text())
    index["parameters"]["truncation"] = 0.5
    (ds / "dataset.json").write_text(json.dumps(index))


def _files(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- damaged shards ----------------------------------------------------------------------


def test_grid_refuses_a_truncated_complete_shard(ds, env, tmp_path):
    tar = ds / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:-512])
    err = _refused(env, "dataset", "grid", ds, "--out", tmp_path / "grid.png")
    assert "shard-000001.tar has" in err and "synth-data" in err
    assert not (tmp_path / "grid.png").exists()


def test_export_refuses_a_flipped_byte_in_the_shard_it_reads(ds, env, tmp_path):
    _flip(ds / "shard-000000.tar", 512 + 40)  # inside sample 0's first member: the tar still parses
    err = _refused(env, "dataset", "export", ds, "0", "--out", tmp_path / "sample")
    assert "shard-000000.tar has another sha256" in err and "--verify" in err
    assert not (tmp_path / "sample").exists()


def test_dataset_index_references_hash_only_their_shard(ds):
    _flip(ds / "shard-000001.tar", 512 + 40)
    assert load_condition("mask", f"{ds}#0").shape == (8, 8)  # shard 0 is intact
    with pytest.raises(DatasetError, match="shard-000001.tar has another sha256"):
        load_condition("mask", f"{ds}#2")  # generate --mask / edit --target-mask use this
    _edit_index(ds)
    with pytest.raises(DatasetError, match="dataset.json was edited or replaced"):
        load_condition("mask", f"{ds}#0")


@pytest.mark.parametrize("command", [["inspect"], ["grid", "--out", "{tmp}/g.png"],
                                     ["export", "3", "--out", "{tmp}/s"]])
def test_garbage_in_a_tar_is_named_not_a_tar_traceback(ds, env, tmp_path, command):
    tar = ds / "shard-000001.tar"
    size = tar.stat().st_size
    tar.write_bytes(b"\x07garbage!" * (size // 9) + b"!" * (size % 9))  # same size
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    run = (lambda *a: _refused(env, *a)) if args[0] == "inspect" else _refused_here
    err = run("dataset", args[0], ds, *args[1:])
    assert "shard-000001.tar" in err and "Fix:" in err


def test_benchmark_reference_refuses_a_truncated_dataset(ds):
    tar = ds / "shard-000000.tar"
    tar.write_bytes(tar.read_bytes()[:-512])
    with pytest.raises(DatasetError, match="shard-000000.tar has .* bytes"):
        scan_reference(str(ds))


# --- dataset.json and stats files --------------------------------------------------------


@pytest.mark.parametrize("damage, expected", [
    (lambda ds: (ds / "dataset.json").unlink(), "dataset.json: not found"),
    (lambda ds: (ds / "dataset.json").write_bytes(b"\x00\xffgarbage"), "malformed dataset index"),
    (_edit_index, "dataset.json was edited or replaced"),
    (lambda ds: (ds / "shard-000001.stats.json").write_text("{garbage"), "unreadable stats file"),
    (lambda ds: (ds / "shard-000001.stats.json").unlink(), "shard-000001.parquet: no stats file"),
])
def test_training_refuses_a_missing_garbled_or_edited_index_or_stats(ds, damage, expected):
    take_snapshot(str(ds))  # intact: fine
    damage(ds)
    with pytest.raises(DatasetError, match=expected):
        take_snapshot(str(ds))  # train autoencoders / train mapping start here


def test_inspect_refuses_a_garbled_stats_file_instead_of_ignoring_it(ds, env):
    (ds / "shard-000001.stats.json").write_text("{garbage")
    err = _refused_here("dataset", "inspect", ds)
    assert "shard-000001.stats.json: unreadable stats file" in err and "synth-data" in err


def test_a_synth_data_rerun_repairs_what_readers_refuse(tmp_path):
    from mm2latent.synth import run
    from tests.test_synth_pipeline import make_params

    params = make_params(tmp_path, n_samples=8)
    for shard in run.plan(params):
        run.run_shard(params, shard)
    (tmp_path / "shard-000001.stats.json").write_text("{garbage")
    with pytest.raises(DatasetError):
        take_snapshot(str(tmp_path))
    for shard in run.plan(params):
        run.run_shard(params, shard)
    assert take_snapshot(str(tmp_path)).shards == (0, 1)


# --- embeddings --------------------------------------------------------------------------


def test_a_flipped_byte_in_an_embeddings_parquet_is_named_and_rewritten(tmp_path):
    import numpy as np

    url = embeddings_url(str(tmp_path), "mask-ae-x", 0)
    vectors = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    write_embedding_table(url, [f"{i:09d}" for i in range(64)], np.arange(64), "mask", vectors, "ab")
    assert embedding_source(url) == "ab"
    path = Path(url)
    data = bytearray(path.read_bytes())
    for offset in range(40, 200, 7):  # inside the first zstd page
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"unreadable embeddings file .*train autoencoders"):
        read_embedding_table(url)
    assert embedding_source(url) is None  # so `train autoencoders` writes it again


# --- bad output paths --------------------------------------------------------------------


def test_export_into_the_dataset_it_reads_is_refused(ds, env):
    before = _files(ds)
    err = _refused(env, "dataset", "export", ds, "0", "--out", ds)
    assert "lies inside the input dataset" in err
    _refused_here("dataset", "export", ds, "0", "--out", ds / "sub")
    assert _files(ds) == before


@pytest.mark.parametrize("command", [
    ["synth-data", "--n", "2", "--samples-per-shard", "2", "--out", "{out}"],
    ["dataset", "grid", "{ds}", "--out", "{out}/grid.png"],
    ["dataset", "export", "{ds}", "0", "--out", "{out}"],
    ["train", "autoencoders", "--dataset", "{ds}", "--out", "{out}"],
])
def test_outputs_under_a_regular_file_are_refused_before_any_work(ds, env, tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / "below"
    args = [a.replace("{out}", str(out)).replace("{ds}", str(ds)) for a in command]
    err = _refused(env, *args) if args[0] == "synth-data" else _refused_here(*args)
    assert "regular file" in err and str(blocker) in err


def test_export_to_an_existing_file_is_refused(ds, env, tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    err = _refused_here("dataset", "export", ds, "0", "--out", target)
    assert "is an existing file" in err and target.read_text() == "keep me"


def _unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in, or skip (root ignores permissions)."""
    for candidate in (Path("/sys"), tmp_path / "locked"):
        if candidate == tmp_path / "locked":
            candidate.mkdir()
            candidate.chmod(0o555)
        try:
            (candidate / ".probe").touch()
        except OSError:
            return candidate
        (candidate / ".probe").unlink()
    pytest.skip("no unwritable directory on this machine")


@pytest.mark.parametrize("command", [
    ["synth-data", "--n", "2", "--samples-per-shard", "2", "--out", "{out}"],
    ["dataset", "export", "{ds}", "0", "--out", "{out}"],
])
def test_outputs_on_a_read_only_location_are_refused(ds, env, tmp_path, command):
    out = _unwritable_dir(tmp_path) / "mm2latent-out"
    args = [a.replace("{out}", str(out)).replace("{ds}", str(ds)) for a in command]
    err = _refused_here(*args)
    assert "cannot write in" in err and "Fix:" in err


# --- decompression bombs -----------------------------------------------------------------


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG declaring width x height grey pixels; its pixel data is never needed."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20000, 10000])  # beyond Pillow's error / only its warning
def test_a_huge_png_condition_is_refused_by_size(tmp_path, side):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, side, side)
    with pytest.raises(ConfigError, match=f"{side} x {side} px.*over the limit.*Fix: resize"):
        load_condition("mask", str(bomb))


def test_generate_with_a_huge_mask_says_so_in_one_line(env, tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 20000, 20000)
    err = _refused(env, "generate", "--text", "a face", "--mask", bomb, "--out", tmp_path / "o.png")
    assert "20000 x 20000 px" in err and "limit" in err
