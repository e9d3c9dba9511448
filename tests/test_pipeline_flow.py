"""The `pipeline` parent flow on a tiny run: the chain, skipping, lineage assets, retrain no-op."""

from __future__ import annotations

import pytest

N, PER_SHARD = 8, 4
TRAIN = dict(ae_epochs=1, mapping_epochs=1, batch_size=4)


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
    assert first == {"synth-data": "ran", "train-autoencoders": "ran: mask, sketch",
                     "train-mapping": "ran: mask, sketch, flame"}
    assert len(list(data.glob("shard-*.stats.json"))) == 2
    assert len(list(data.glob("embeddings/mask-ae-*/*.parquet"))) == 2

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
    (mask_emb_dir,) = data.glob("embeddings/mask-ae-*")  # named after the autoencoder's weights
    mask_emb = mask_emb_dir.resolve().as_uri()
    assert assets[mask_emb][0] == {dataset, mask_ae}
    mapping_mask = model_key("mapping-mask")
    assert assets[mapping_mask][0] == {dataset, mask_emb}
    assert assets[mapping_mask][1]["embeddings_version"] == "mask-ae-v1"
    assert assets[model_key("mapping-flame")][0] == {dataset}
    assert assets[mapping_mask][1]["dataset_hash"] != meta["dataset_hash"]  # embeddings folded in

    asset_events.clear()
    second = pipeline(**kwargs)
    assert all(status.startswith("skipped") for status in second.values()), second
    assert not _materialized(asset_events)

    # A changed training setting makes only the affected steps run again.
    third = pipeline(**(kwargs | {"mapping_epochs": 2, "mappings": ["flame"]}))
    assert third["train-mapping"] == "ran: flame"
    assert third["synth-data"].startswith("skipped")


def test_retrain_on_missing_dataset_says_nothing_to_do(prefect_harness, tmp_path):
    from flows.train import retrain

    state = retrain(str(tmp_path / "no-such-dataset"), out=str(tmp_path / "runs"),
                    return_state=True)
    assert state.is_completed()
    result = state.result()
    assert not result["retrained"]
    assert result["reason"].startswith("nothing to do") and "no complete shards" in result["reason"]


@pytest.mark.parametrize("runner, address, problem", [
    ("processes", None, "choose one of threads, dask"),
    ("threads", "tcp://127.0.0.1:8786", "needs task_runner='dask'"),
    ("dask", "127.0.0.1:8786", "tcp://HOST:PORT"),
])
def test_bad_task_runner_choice_is_a_clear_error(runner, address, problem):
    from flows.runners import check_runner_choice
    from mm2latent.errors import ConfigError

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
