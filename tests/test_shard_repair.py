"""A complete shard whose files were damaged later is found, reported by name and redone."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app
from mm2latent.synth import run
from tests.test_synth_pipeline import make_params


def _write_all(params, verify: bool = False) -> list[int]:
    todo = run.plan(params, verify=verify)
    for index in todo:
        run.run_shard(params, index)
    return todo


def _files(root) -> dict[str, bytes]:
    """Tar and parquet bytes of every shard (stats files also hold timings, which vary)."""
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())
            if p.name.startswith("shard-") and p.suffix in (".tar", ".parquet")}


def test_rerun_redoes_a_truncated_or_flipped_shard_byte_identical(tmp_path):
    params = make_params(tmp_path, n_samples=8)  # two shards of 4
    assert _write_all(params) == [0, 1]
    original = _files(tmp_path)
    tar = tmp_path / "shard-000000.tar"
    tar.write_bytes(tar.read_bytes()[:-1024])  # a truncated copy
    assert _write_all(params) == [0]  # sizes are compared on every rerun
    assert _files(tmp_path) == original
    parquet = tmp_path / "shard-000001.parquet"
    flipped = bytearray(parquet.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01  # one bit: same size, only a digest can tell
    parquet.write_bytes(bytes(flipped))
    assert run.plan(params) == []
    assert _write_all(params, verify=True) == [1]
    assert _files(tmp_path) == original


def test_inspect_names_a_damaged_shard_instead_of_a_tar_traceback(tmp_path):
    params = make_params(tmp_path, n_samples=8)
    _write_all(params)
    tar = tmp_path / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:700])
    for args in (["--verify"], []):
        result = CliRunner().invoke(app, ["dataset", "inspect", str(tmp_path), *args])
        assert result.exit_code == 2, result.output
        assert "shard 1: shard-000001.tar has 700 bytes" in result.output
        assert "Traceback" not in result.output and result.exception.__class__ is SystemExit
