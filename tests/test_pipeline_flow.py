"""The `pipeline` parent flow on a tiny run: the chain (through the benchmark), skipping,
lineage assets, retrain no-op, and prefect.yaml's trigger chain."""

from __future__ import annotations

import pytest

N, PER_SHARD = 8, 4
TRAIN = dict(ae_epochs=1, mapping_epochs=1, batch_size=4, benchmark_pairs=2)


@pytest.fixture
def asset_events(monkeypatch):
    """Every asset event the run emits, as (event name, resource id, related ids, payload)."""
    import prefect.events

    seen, emit = [], prefect.events.emit_event

    def recording(event, resource, related=None, payload=None, **kw):
        if event.startswith("prefect.asset."):
            seen.append((event, resource["prefect.resource.id"],
                         {r["prefect.resource.id"] for r in related or []}, payload or {}))
        return emit(event, resource, related=related, payload=payload, **kw)

    monkeypatch.setattr(prefect.events, "emit_event", recording)
    return seen


def _materialized(events) -> dict[str, tuple[set, dict]]:
    return {key: (related, payload) for name, key, related, payload in events
            if name == "prefect.asset.materialization.succeeded"}


def test_pipeline_chain_skips_done_steps_and_records_lineage(prefect_harness, tmp_path, asset_events):
    from flows.pipeline import pipeline

    data, runs = tmp_path / "data", tmp_path / "runs"
    kwargs = dict(n_samples=N, samples_per_shard=PER_SHARD, data=str(data), runs=str(runs), **TRAIN)
    first = pipeline(**kwargs)
    assert list(first) == ["synth-data", "attributes", "curate", "train-autoencoders",
                           "train-mapping", "benchmark"]
    assert first["attributes"] == first["curate"] == "skipped: no curation spec"
    assert first["synth-data"] == "ran" and first["train-autoencoders"] == "ran: mask, sketch"
    assert first["train-mapping"] == "ran: mask, sketch, flame"
    assert first["benchmark"].startswith("ran: mapping-mask-v1"), first
    # The fixture is written beside the dataset; the report lands in a per-inputs folder.
    assert (tmp_path / "benchmark-fixture" / "CelebA-Dialog" / "captions_hq.json").is_file()
    (report_dir,) = (runs / "benchmark").glob("mapping-mask-v1-*")
    assert {"report.md", "summary.json", "grid.png"} <= {p.name for p in report_dir.iterdir()}
    assert len(list(data.glob("shard-*.stats.json"))) == 2
    (mask_emb_dir,) = data.glob("embeddings/mask-ae-*")  # named after the autoencoder's weights
    assert len(list(mask_emb_dir.glob("*.parquet"))) == 2

    assets = _materialized(asset_events)
    dataset = data.resolve().as_uri()
    weights = {"weights://tiny-seeded/" + c for c in ("generator", "farl", "parser", "deca")}
    related, meta = assets[dataset]
    assert related == weights and set(meta["weight_digests"]) == weights
    assert len(meta["dataset_hash"]) == 64 and meta["shards"] == 2

    def model_key(name):
        return next(k for k, (_, m) in assets.items() if m.get("model") == name)

    mask_ae = model_key("mask-ae")
    assert assets[mask_ae][0] == {dataset} and assets[mask_ae][1]["version"] == 1
    assert mask_ae.startswith((runs / "mask-ae").resolve().as_uri())  # resolved, not relative
    mask_emb = mask_emb_dir.resolve().as_uri()
    assert assets[mask_emb][0] == {dataset, mask_ae}
    mapping_mask = model_key("mapping-mask")
    assert assets[mapping_mask][0] == {dataset, mask_emb}
    assert assets[mapping_mask][1]["embeddings_version"] == "mask-ae-v1"
    assert assets[model_key("mapping-flame")][0] == {dataset}
    assert assets[mapping_mask][1]["dataset_hash"] != meta["dataset_hash"]  # embeddings folded in

    report = (report_dir / "report.md").resolve().as_uri()
    related, bench = assets[report]
    assert related == {mapping_mask}  # the report is downstream of the MappingNet it scored
    assert bench["model_versions"] == {"mapping-mask": "mapping-mask-v1", "mask-ae": "mask-ae-v1"}
    assert bench["dataset_hash"] == assets[mapping_mask][1]["dataset_hash"]
    assert bench["pairs"] == 2 and len(bench["pairs_hash"]) == 64 and bench["seed"] == 0
    assert bench["makes_faces"] is False and set(bench["metrics"]) >= {"clip_score", "cmmd"}

    asset_events.clear()
    second = pipeline(**kwargs)
    assert all(status.startswith("skipped") for status in second.values()), second
    assert not _materialized(asset_events)

    # A changed training setting makes only the affected steps run again.
    third = pipeline(**(kwargs | {"mapping_epochs": 2, "mappings": ["flame"]}))
    assert third["train-mapping"] == "ran: flame"
    assert third["synth-data"].startswith("skipped")
    assert third["benchmark"].startswith("skipped: the report of mapping-mask-v1"), third
    assert len(list((runs / "benchmark").iterdir())) == 1


CURATION = """
filters: {near_duplicates: {vector: w, max_cosine: 0.99}}
balance: {attributes: {yaw: {column: deca.yaw_deg, threshold: 0}}}
n: 6
"""


def test_pipeline_curates_then_trains_on_the_curated_dataset_with_lineage(prefect_harness, tmp_path,
                                                                          asset_events):
    from flows.pipeline import pipeline
    from storage.dataset_index import DatasetIndex

    data, runs, spec = tmp_path / "data", tmp_path / "runs", tmp_path / "curate.yaml"
    spec.write_text(CURATION)
    kwargs = dict(n_samples=N, samples_per_shard=PER_SHARD, data=str(data), runs=str(runs),
                  mappings=["flame"], mapping_epochs=1, batch_size=4, benchmark_pairs=0,
                  curate_spec=str(spec))
    first = pipeline(**kwargs)
    assert first["attributes"].startswith("ran: 6 shard file(s)"), first
    assert first["curate"] == f"ran: 6 of 8 samples into {data}-curated", first
    assert first["train-mapping"] == "ran: flame"
    curated = DatasetIndex.read(f"{data}-curated")
    assert curated.num_samples == 6 and curated.parameters["kind"] == "curated"

    assets = _materialized(asset_events)
    dataset, curated_key = data.resolve().as_uri(), (tmp_path / "data-curated").resolve().as_uri()
    attributes_key = f"{dataset}/attributes"
    assert assets[attributes_key][0] == {dataset}
    assert assets[curated_key][0] == {dataset, attributes_key}
    assert assets[curated_key][1]["selected"] == 6
    (mapping,) = [k for k, (_, m) in assets.items() if m.get("model") == "mapping-flame"]
    assert assets[mapping][0] == {curated_key}  # the model is downstream of the curated data

    asset_events.clear()
    second = pipeline(**kwargs)
    assert all(status.startswith("skipped") for status in second.values()), second
    assert not _materialized(asset_events)


def test_retrain_on_missing_dataset_says_nothing_to_do(prefect_harness, tmp_path):
    from flows.train import retrain

    state = retrain(str(tmp_path / "no-such-dataset"), out=str(tmp_path / "runs"),
                    return_state=True)
    assert state.is_completed()
    result = state.result()
    assert not result.retrained
    assert result.reason.startswith("nothing to do") and "no complete shards" in result.reason


@pytest.mark.parametrize("runner, address, problem", [
    ("processes", None, "choose one of threads, dask"),
    ("threads", "tcp://127.0.0.1:8786", "needs task_runner='dask'"),
    ("dask", "127.0.0.1:8786", "tcp://HOST:PORT"),
])
def test_bad_task_runner_choice_is_a_clear_error(runner, address, problem):
    from flows.runners import check_runner_choice
    from mm2latent_core.errors import ConfigError

    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")):
        check_runner_choice(runner, address)


@pytest.mark.parametrize("command", [["pipeline"], ["synth-data", "--out", "unused"]])
def test_cli_refuses_a_bad_dask_address_before_any_work(command, tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, [*command, "--task-runner", "dask",
                                      "--dask-address", "localhost:8786"])
    assert result.exit_code == 2
    assert "tcp://HOST:PORT" in result.output


def _deployments_by_name() -> dict[str, dict]:
    """prefect.yaml's deployments as {"<flow name>/<deployment name>": deployment}."""
    import importlib
    from pathlib import Path

    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "prefect.yaml").read_text())
    named = {}
    for deployment in config["deployments"]:
        path, attr = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow_name = getattr(module, attr).name
        named[f"{flow_name}/{deployment['name']}"] = deployment
    return named


def test_prefect_yaml_triggers_chain_synth_data_to_retrain_to_benchmark():
    deployments = _deployments_by_name()
    chain = {}  # upstream deployment -> deployment its completion starts
    for name, deployment in deployments.items():
        for trigger in deployment.get("triggers", []):
            assert trigger["type"] == "event" and trigger["enabled"], name
            assert trigger["expect"] == ["prefect.flow-run.Completed"], name
            assert trigger["match"] == {"prefect.resource.id": "prefect.flow-run.*"}, name
            related = {r["prefect.resource.role"]: r["prefect.resource.name"]
                       for r in trigger["match_related"]}
            assert set(related) == {"flow", "deployment"}, name
            upstream = f"{related['flow']}/{related['deployment']}"
            assert upstream in deployments, f"{name}'s trigger names no deployment: {upstream}"
            assert trigger["name"] == f"{upstream} completed -> {name}"
            chain[upstream] = name
    assert chain == {"synth-data/tiny": "retrain/tiny", "retrain/tiny": "benchmark/tiny"}
