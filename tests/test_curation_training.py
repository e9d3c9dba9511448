"""Training reads a curated dataset unchanged: the mask autoencoder (tars) and the mask
MappingNet (parquet vectors + the autoencoder's embeddings), on a curated learnable dataset."""

from __future__ import annotations

from mm2latent.fabricate.learnable import write_learnable_dataset
from mm2latent.presets import get_preset
from mm2latent.training.config import MappingTrainCfg, autoencoder_train_cfg
from mm2latent.training.data import dataset_hash
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.pipeline import autoencoder_run, mapping_run
from mm2latent.training.registry import default_registry_url
from storage.embeddings import embeddings_url
from storage.fs import list_names
from tests.test_curation import curate, write_attributes

PRESET = get_preset("tiny")


def test_autoencoder_and_mapping_training_read_a_curated_dataset(tmp_path):
    source, out, runs = str(tmp_path / "src"), str(tmp_path / "curated"), str(tmp_path / "runs")
    write_learnable_dataset(source, n_shards=2, per_shard=8, members=("mask",),
                            dims={"w": 512, "flame": 159, "farl": 512})
    write_attributes(source)
    spec = {"filters": {"near_duplicates": {"vector": "farl", "max_cosine": 0.999}},
            "balance": {"attributes": {"g": {"column": "mask.eyeglasses", "threshold": 0.1}}},
            "n": 6}
    curate(source, out, spec, per_shard=4)
    registry = default_registry_url(runs)
    quick = dict(epochs=1, batch_size=4, val_fraction=0.0)
    ae = autoencoder_run(out, runs, registry, PRESET.mask_ae, autoencoder_train_cfg("mask", **quick))
    assert ae.record.dataset_hash == dataset_hash(out) != dataset_hash(source)
    assert list_names(embeddings_url(out, ae.record.extra["embeddings"])) == [
        "shard-000000.parquet", "shard-000001.parquet"]
    mapping = mapping_run(out, runs, registry, mapping_net_cfg(PRESET.mapping, "mask"),
                          MappingTrainCfg(modality="mask", **quick))
    assert mapping.record.extra["embeddings_version"] == "mask-ae-v1"
    assert mapping.summary.num_samples == 6
