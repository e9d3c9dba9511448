"""A synth-data run's parameters: one SynthDataParams, validated once, the same object from the
CLI through the flow to the tasks; deployments validate into the same object as the CLI."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools.validation import validate as validate_json
from typer.testing import CliRunner

import flows.cli
import flows.cli_flow
import flows.pipeline
import mm2latent.synth.params as params_module
from flows.cli import app
from flows.pipeline import pipeline
from flows.synth_data import synth_data
from mm2latent_core.errors import ParameterError
from mm2latent.synth import run
from mm2latent.synth.params import CLI_OPTIONS, SynthDataParams, parse_params
from mm2latent.synth.run import SynthSummary

ROOT = Path(__file__).resolve().parents[1]


def _deployments(entrypoint: str) -> dict[str, dict]:
    """prefect.yaml's deployments of `entrypoint`, by deployment name."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d["parameters"] for d in config["deployments"] if d["entrypoint"] == entrypoint}


def _cli_args(fields: dict) -> list[str]:
    """The `mm2latent synth-data` options that set `fields` (CLI_OPTIONS names the odd ones)."""
    args = []
    for field, value in fields.items():
        value = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
        args += [CLI_OPTIONS.get(field, "--" + field.replace("_", "-")), value]
    return args


@pytest.fixture
def cli_params(monkeypatch, tmp_path):
    """Run `synth-data` args through the CLI up to the flow call; return the params it passes.

    The flow, the dataset/weights pre-flight and the temporary Prefect server are replaced: the
    ffhq deployment's options must parse here without its weights.
    """
    monkeypatch.chdir(tmp_path)  # the deployments' relative --out resolve under tmp_path
    monkeypatch.setattr(flows.cli_flow, "tied_prefect_server", contextlib.nullcontext)
    monkeypatch.setattr(run, "validate", lambda *a, **k: None)
    received = []

    def fake_flow(params, **_run_options):
        received.append(params)
        return SynthSummary(out=params.out, preset=params.preset, makes_faces=True, shards=0,
                            samples=0, ok=0, failures=0, durations_s={})

    monkeypatch.setattr("flows.synth_data.synth_data", fake_flow)

    def invoke(args: list[str]) -> SynthDataParams:
        result = CliRunner().invoke(app, ["synth-data", *args])
        assert result.exit_code == 0, result.output
        (params,) = received[-1:]
        return params

    return invoke


@pytest.mark.parametrize("name", ["tiny", "ffhq"])
def test_deployment_parameters_validate_and_equal_the_cli_params(cli_params, name):
    parameters = _deployments("flows/synth_data.py:synth_data")[name]
    # What the server checks a run against (enforce_parameter_schema): the flow's schema.
    validate_json(parameters, parameter_schema(synth_data).model_dump_for_openapi(),
                  raise_on_error=True)
    from_deployment = synth_data.validate_parameters(parameters)["params"]  # what the worker runs
    assert isinstance(from_deployment, SynthDataParams)
    assert from_deployment == cli_params(_cli_args(parameters["params"]))


def test_pipeline_deployment_makes_the_params_of_the_equivalent_cli_run(prefect_harness, cli_params,
                                                                        monkeypatch):
    """pipeline/tiny passes synth-data the object it validated from its own parameters."""
    parameters = _deployments("flows/pipeline.py:pipeline")["tiny"]
    validate_json(parameters, parameter_schema(pipeline).model_dump_for_openapi(), raise_on_error=True)
    made = []
    monkeypatch.setattr(flows.pipeline, "STEPS", {"synth-data": lambda r: made.append(r.params) or "ok"})
    pipeline(**parameters)
    assert made == [cli_params(["--preset", "tiny", "--out", parameters["data"]])]


def test_the_deployment_schema_shows_every_field_with_its_default_and_description():
    schema = parameter_schema(synth_data).model_dump_for_openapi()
    assert schema["properties"]["params"]["$ref"] == "#/definitions/SynthDataParams"
    shown = schema["definitions"]["SynthDataParams"]["properties"]
    assert set(shown) == set(SynthDataParams.model_fields)
    defaults = SynthDataParams().model_dump(mode="json")
    for field, prop in shown.items():
        assert prop["default"] == defaults[field] and prop["description"], field
    assert schema["properties"]["params"]["default"] == defaults


BAD = [  # (CLI options, the same values as a deployment's fields, words of the message)
    (["--psi", "nan"], {"truncation_psi": math.nan}, "truncation_psi (--psi) nan is not a number"),
    (["--psi", "3"], {"truncation_psi": 3.0}, "outside [-1, 2]"),
    (["--device", "tpu9"], {"device": "tpu9"}, "is not a torch device"),
    (["--n", "0"], {"n_samples": 0}, "n_samples (--n): Input should be greater than 0"),
    (["--modalities", "mask,depth"], {"modalities": ["mask", "depth"]}, "unknown 'depth'"),
    (["--image-size", "7"], {"image_size": 7}, "image_size (--image-size) 7 is not a power"),
    (["--image-format", "gif"], {"image_format": "gif"}, "image_format (--image-format)"),
    (["--preset", "nope"], {"preset": "nope"}, "Unknown preset 'nope'"),
    (["--n", "100000001", "--samples-per-shard", "100"],
     {"n_samples": 100000001, "samples_per_shard": 100}, "to 101 or more"),
]


@pytest.mark.parametrize("args, fields, words", BAD)
def test_a_bad_value_gets_the_same_message_from_the_cli_and_the_flow(prefect_harness, tmp_path,
                                                                      args, fields, words):
    out = str(tmp_path / "out")
    cli = CliRunner().invoke(app, ["synth-data", "--out", out, *args])
    assert cli.exit_code == 2, cli.output
    with pytest.raises(ParameterError) as flow_error:  # fields as a deployment run gives them
        synth_data({"out": out} | fields)
    message = str(flow_error.value)
    assert words in message and message.startswith("Invalid synth-data parameters: ")
    assert " ".join(cli.output.split()) == f"error: {' '.join(message.split())}"
    assert not Path(out).exists()


def test_the_cli_validates_once_and_every_task_gets_that_object(prefect_harness, tmp_path,
                                                                monkeypatch):
    checks, built, seen = [], [], []
    real_check, real_parse = params_module.check_device, params_module.parse_params
    monkeypatch.setattr(params_module, "check_device",
                        lambda *a: checks.append(a) or real_check(*a))
    monkeypatch.setattr(params_module, "parse_params",
                        lambda **kw: built.append(real_parse(**kw)) or built[-1])
    for step in ("plan", "run_shard", "summarize"):  # what tasks/synth.py calls
        real = getattr(run, step)
        monkeypatch.setattr(run, step, lambda params, *a, _real=real, **k:
                            seen.append(params) or _real(params, *a, **k))

    result = CliRunner().invoke(app, ["synth-data", "--n", "3", "--samples-per-shard", "2",
                                      "--modalities", "sketch", "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert len(checks) == 1 and len(built) == 1  # one validation, in the CLI
    assert len(seen) == 4 and all(p is built[0] for p in seen)  # plan, 2 shards, summary


def test_a_validated_object_is_never_validated_again(prefect_harness, mem_url, monkeypatch):
    params = parse_params(n_samples=1, samples_per_shard=1, modalities=("sketch",), out=mem_url)
    calls = []
    monkeypatch.setattr(params_module, "check_device", lambda *a: calls.append(a))
    assert synth_data(params).ok == 1
    assert calls == []
