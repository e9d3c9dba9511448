"""The `mm2latent synth-data` and `dataset` commands as a user runs them."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app


def test_synth_data_then_inspect_grid_and_a_refused_rerun(prefect_harness, tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "ds")
    made = runner.invoke(app, ["synth-data", "--n", "3", "--samples-per-shard", "2", "--out", out])
    assert made.exit_code == 0, made.output
    assert "3 ok, 0 failed, 2 shards" in made.output and "NOT faces" in made.output

    inspected = runner.invoke(app, ["dataset", "inspect", out, "--verify"])
    assert inspected.exit_code == 0, inspected.output
    assert "samples: 3 (3 ok, 0 failed)" in inspected.output and "verified 2 shard(s)" in inspected.output
    grid = runner.invoke(app, ["dataset", "grid", out, "--out", str(tmp_path / "g.png")])
    assert grid.exit_code == 0 and (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()}
    refused = runner.invoke(app, ["synth-data", "--n", "3", "--seed", "1", "--out", out])
    assert refused.exit_code == 2
    assert "parameters.seed: existing 0 vs requested 1" in refused.output
    assert "Traceback" not in refused.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()} == before


def test_bad_parameters_exit_2_with_the_field_named(tmp_path):
    result = CliRunner().invoke(app, ["synth-data", "--n", "0", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "n_samples" in result.output
    assert not (tmp_path / "x").exists()
