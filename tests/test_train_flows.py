"""The training flows and CLI on a real tiny synth-data dataset (random networks, not faces)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli_train import train_app

PER_SHARD = 4


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """One tiny synth-data dataset (2 shards x 4 samples) shared by the flow tests."""
    from mm2latent.synth.params import parse_params
    from mm2latent.synth.run import plan, run_shard

    out = tmp_path_factory.mktemp("tiny-synth")
    params = parse_params(preset="tiny", n_samples=2 * PER_SHARD, samples_per_shard=PER_SHARD,
                          out=str(out))
    for shard in plan(params):
        run_shard(params, shard)
    return out


def _copy_shards(src: Path, dst: Path, shards: list[int]) -> None:
    """Copy dataset.json and the given shards (stats last, as a writer would finish them)."""
    dst.mkdir(exist_ok=True)
    shutil.copy(src / "dataset.json", dst / "dataset.json")
    for shard in shards:
        for suffix in ("tar", "parquet", "stats.json"):
            shutil.copy(src / f"shard-{shard:06d}.{suffix}", dst / f"shard-{shard:06d}.{suffix}")


def test_retrain_trains_all_then_nothing_then_again_after_new_shards(prefect_harness, tiny_dataset, tmp_path):
    from flows.train import retrain

    data, out = tmp_path / "data", tmp_path / "runs"
    _copy_shards(tiny_dataset, data, [0])
    kwargs = dict(out=str(out), autoencoders=["mask"], mappings=["mask"],
                  ae_epochs=1, mapping_epochs=1, batch_size=4)
    first = retrain(str(data), **kwargs)
    assert first.retrained
    assert [(r.name, r.version) for r in first.records] == [("mask-ae", 1), ("mapping-mask", 1)]
    embeddings = first.records[0].extra["embeddings"]  # named by the checkpoint digest
    assert embeddings.startswith("mask-ae-") and len(embeddings) == len("mask-ae-") + 12
    assert (data / "embeddings" / embeddings / "shard-000000.parquet").exists()
    mapping = first.records[1]
    assert mapping.extra["embeddings_version"] == "mask-ae-v1"
    assert mapping.extra["embeddings"] == embeddings
    run_dir = Path(mapping.checkpoint_url).parent
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run_dir / "summary.json").read_text())["num_samples"] == PER_SHARD

    second = retrain(str(data), **kwargs)
    assert not second.retrained and second.reason.startswith("nothing to do")

    _copy_shards(tiny_dataset, data, [1])
    third = retrain(str(data), **kwargs)
    assert third.retrained and "1 new shard(s)" in third.reason
    assert [r.version for r in third.records] == [2, 2]
    assert third.records[1].extra["embeddings_version"] == "mask-ae-v2"
    assert sorted(p.name for p in (out / "registry" / "mask-ae").iterdir()) == [
        "v000001.json", "v000002.json"]


def test_cli_trains_an_autoencoder_and_reports_user_errors(prefect_harness, tiny_dataset, tmp_path):
    runner = CliRunner()
    out = tmp_path / "runs"
    ok = runner.invoke(train_app, ["autoencoders", "--dataset", str(tiny_dataset), "--out", str(out),
                                   "--modalities", "sketch", "--epochs", "1", "--batch-size", "4"])
    assert ok.exit_code == 0, ok.output
    assert "sketch-ae-v1" in ok.output
    bad = runner.invoke(train_app, ["mapping", "--dataset", str(tmp_path / "nothing"),
                                    "--modality", "flame", "--out", str(out)])
    assert bad.exit_code == 2
    # A folder without dataset.json is no dataset (issue 24: refused, not guessed at).
    assert "error:" in bad.output and "is not a dataset" in bad.output
    no_ae = runner.invoke(train_app, ["mapping", "--dataset", str(tiny_dataset), "--out", str(out),
                                      "--modality", "mask"])
    assert no_ae.exit_code == 2 and "no mask-ae registered" in no_ae.output


def test_retrain_works_on_one_snapshot_while_the_dataset_grows(prefect_harness, tiny_dataset,
                                                               tmp_path, monkeypatch):
    # The nightly retrain meets synth-data still writing: a shard completes after the
    # autoencoder step embedded the dataset and before the MappingNet step reads it.
    from flows.train import retrain
    from mm2latent.training import data as training_data
    from mm2latent.training import pipeline

    data, out = tmp_path / "data", tmp_path / "runs"
    _copy_shards(tiny_dataset, data, [0])
    embed = pipeline.write_embeddings

    def embed_then_grow(*args, **kwargs):
        result = embed(*args, **kwargs)
        _copy_shards(tiny_dataset, data, [1])  # shard 1 completes mid-run
        return result

    hashes = []
    dataset_hash = training_data.dataset_hash
    monkeypatch.setattr(pipeline, "write_embeddings", embed_then_grow)
    monkeypatch.setattr(training_data, "dataset_hash",
                        lambda *a, **k: hashes.append(a) or dataset_hash(*a, **k))
    kwargs = dict(out=str(out), autoencoders=["mask"], mappings=["mask"],
                  ae_epochs=1, mapping_epochs=1, batch_size=4)
    first = retrain(str(data), **kwargs)
    assert first.retrained
    ae, mapping = first.records
    assert ae.extra["shards"] == mapping.extra["shards"] == [0]  # the snapshot, not [0, 1]
    assert ae.extra["raw_dataset_hash"] == mapping.extra["raw_dataset_hash"]
    assert len(hashes) == 1  # shards listed and hashed once for the whole run
    monkeypatch.setattr(pipeline, "write_embeddings", embed)
    second = retrain(str(data), **kwargs)  # the next run picks the new shard up
    assert second.retrained and "1 new shard(s)" in second.reason
    assert second.records[1].extra["shards"] == [0, 1]
