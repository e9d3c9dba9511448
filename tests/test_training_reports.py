"""Typed training reports (old summary.json files still read) and training options declared once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli_train import train_app
from flows.train import retrain, train_autoencoders, train_mapping_flow
from mm2latent.errors import ConfigError
from mm2latent.training.options import (AutoencoderOptions, MappingOptions, TrainChainOptions,
                                        parse_options)
from mm2latent.training.reports import EpochMetrics, MappingTrainReport, TrainReport

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "reports-v1" / "mapping-summary.json"
FLOWS = {"train_autoencoders": (train_autoencoders, AutoencoderOptions, {"on_progress", "snapshot"}),
         "train_mapping_flow": (train_mapping_flow, MappingOptions, {"on_progress", "snapshot"}),
         "retrain": (retrain, TrainChainOptions, set())}


def test_a_summary_written_before_typed_reports_reads_and_writes_back_unchanged():
    # The fixture was written by the dict-based code (tests/make_report_fixture.py says how).
    text = FIXTURE.read_text()
    report = MappingTrainReport.from_json(text)
    assert report.best_epoch == 1 and report.epochs_done == 2 and report.finished
    assert report.num_samples == 16 and report.embeddings_version is None
    assert [r.epoch for r in report.history] == [0, 1]
    assert report.history[1].checkpoint == "ckpt-000000004.pt"
    assert report.metrics.val_loss == report.history[1].val_loss == pytest.approx(10.3085, abs=1e-3)
    assert report.history[0].losses["train_cosine"] == pytest.approx(1.0628, abs=1e-3)
    assert report.to_json() == text  # same keys, same values, same layout


def test_reports_round_trip_and_keep_optional_keys_as_before():
    row = EpochMetrics(epoch=0, step=3, lr=0.1, losses={"train_loss": 2.0}, checkpoint="c.pt")
    report = TrainReport(run_url="r", checkpoint_url="r/c.pt", last_checkpoint_url="r/c.pt",
                         best_epoch=0, epochs_done=1, stopped_early=False, finished=True,
                         history=(row,), dataset_hash="d", num_samples=4)
    doc = json.loads(report.to_json())
    assert "embeddings_version" not in doc  # autoencoder summaries never had it
    assert doc["metrics"] == {"epoch": 0, "step": 3, "lr": 0.1, "train_loss": 2.0}
    assert TrainReport.from_json(report.to_json()) == report
    assert row.val_loss is None and row.monitored == 2.0  # no validation split
    mapping = MappingTrainReport.from_json(FIXTURE.read_text())
    assert MappingTrainReport.from_json(mapping.to_json()) == mapping


@pytest.mark.parametrize("name", sorted(FLOWS))
def test_flow_parameters_are_the_options_fields_with_their_help(name):
    flow, model, runtime = FLOWS[name]
    schema = flow.parameters.model_dump()["properties"]
    assert set(schema) == set(model.model_fields) | runtime
    for field, info in model.model_fields.items():
        assert schema[field]["description"] == info.description, field


@pytest.mark.parametrize("command, model", [("autoencoders", AutoencoderOptions),
                                            ("mapping", MappingOptions)])
def test_cli_flags_are_the_options_fields(command, model):
    import typer.main

    click_command = typer.main.get_command(train_app).commands[command]
    names = {p.name for p in click_command.params if p.name != "help"}
    assert names == set(model.model_fields)


def test_prefect_yaml_training_deployments_validate_against_the_options():
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    checked = 0
    for deployment in deployments:
        path, attr = deployment["entrypoint"].split(":")
        if path != "flows/train.py":
            continue
        flow, model, _ = FLOWS[attr]
        values = flow.validate_parameters(deployment["parameters"])
        options = parse_options(model, {k: v for k, v in values.items() if k in model.model_fields})
        if isinstance(options, AutoencoderOptions):
            assert [c.epochs for c in options.train_cfgs()] == [20, 20]
        elif isinstance(options, MappingOptions):
            assert options.train_cfg().lr == 0.01
        checked += 1
    assert checked == 5


def test_a_bad_option_fails_before_training_in_the_flow_and_in_the_cli(tmp_path):
    with pytest.raises(ConfigError, match="unknown 'depth'"):
        train_autoencoders.fn(dataset=str(tmp_path / "d"), out=str(tmp_path / "o"),
                              modalities=["depth"])
    with pytest.raises(ConfigError, match="epochs"):
        train_mapping_flow.fn(dataset=str(tmp_path / "d"), out=str(tmp_path / "o"), epochs=0)
    assert not (tmp_path / "o").exists()
    result = CliRunner().invoke(train_app, ["autoencoders", "--dataset", str(tmp_path / "d"),
                                            "--modalities", "mask,depth"])
    assert result.exit_code == 2 and "--modalities: unknown 'depth'" in result.output


def test_every_loop_override_is_a_training_config_field():
    import dataclasses

    from mm2latent.training.config import TrainCfg
    from mm2latent.training.options import TrainOverrides

    assert set(TrainOverrides.model_fields) <= {f.name for f in dataclasses.fields(TrainCfg)}
