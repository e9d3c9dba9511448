"""Model registry versions and the retrain decision."""

from __future__ import annotations

import json

import pytest

from mm2latent.errors import TrainingError
from mm2latent.training import data
from mm2latent.training.pipeline import retrain_plan
from mm2latent.training.registry import ModelRegistry
from storage.atomic import atomic_write_bytes
from storage.fs import join
from tests.fabricate_training import write_learnable_dataset, write_learnable_shard


def test_versions_are_monotonic_per_name_and_persist(mem_url):  # noqa: F811
    registry = ModelRegistry(mem_url)
    assert registry.latest("mask-ae") is None
    first = registry.register("mask-ae", join(mem_url, "ckpt-a"), "data", "h1", metrics={"val_loss": 0.5})
    registry.register("mapping-mask", join(mem_url, "ckpt-m"), "data", "h1")
    second = ModelRegistry(mem_url).register("mask-ae", join(mem_url, "ckpt-b"), "data", "h2", config={"lr": 1e-3})
    assert (first.version, second.version, first.tag) == (1, 2, "mask-ae-v1")
    reread = ModelRegistry(mem_url)
    assert reread.latest("mask-ae").checkpoint_url == join(mem_url, "ckpt-b")
    assert reread.get("mask-ae", 1).metrics == {"val_loss": 0.5}
    assert reread.names() == ["mapping-mask", "mask-ae"]
    with pytest.raises(TrainingError, match="known: 1, 2"):
        reread.get("mask-ae", 5)


def test_corrupt_registry_is_a_clear_error(mem_url):  # noqa: F811
    atomic_write_bytes(join(mem_url, "registry.json"), b"{not json")
    with pytest.raises(TrainingError, match="unreadable model registry"):
        ModelRegistry(mem_url).latest("mask-ae")


def _legacy_doc(records: list[dict]) -> bytes:
    """A registry.json of the older single-file layout."""
    return json.dumps({"format": 1, "models": {"mask-ae": records}}).encode()


def test_legacy_single_file_registry_reads_as_typed_records_and_keeps_numbering(mem_url):  # noqa: F811
    old = {"name": "mask-ae", "version": 1, "created": "2026-01-01T00:00:00+00:00",
           "checkpoint_url": "../runs/a/ckpt.pt", "dataset_url": "data", "dataset_hash": "h1",
           "metrics": {"val_loss": 0.5}, "config": {}, "extra": {}}
    atomic_write_bytes(join(mem_url, "reg", "registry.json"), _legacy_doc([old]))
    registry = ModelRegistry(join(mem_url, "reg"))
    record = registry.get("mask-ae", 1)
    assert (record.metrics, record.checkpoint_url) == ({"val_loss": 0.5}, join(mem_url, "runs/a/ckpt.pt"))
    assert registry.register("mask-ae", join(mem_url, "ckpt-b"), "data", "h2").version == 2
    assert [r.version for r in registry.records("mask-ae")] == [1, 2]
    assert registry.names() == ["mask-ae"]


@pytest.mark.parametrize("bad", [["not a record"], [{"name": "mask-ae", "version": 1}]])
def test_malformed_record_is_a_clear_error_naming_the_file(mem_url, bad):  # noqa: F811
    atomic_write_bytes(join(mem_url, "registry.json"), _legacy_doc(bad))
    with pytest.raises(TrainingError, match="registry.json: unreadable model registry"):
        ModelRegistry(mem_url).latest("mask-ae")


def test_retrain_plan_sees_new_shards_and_otherwise_does_nothing(mem_url):  # noqa: F811
    dataset, registry_url = join(mem_url, "data"), join(mem_url, "registry")
    write_learnable_dataset(dataset, n_shards=1, per_shard=4, planned_shards=2)
    plan = retrain_plan(dataset, registry_url, ["mask-ae"])
    assert plan.needed and "never trained" in plan.reason
    ModelRegistry(registry_url).register("mask-ae", "c", dataset, data.dataset_hash(dataset),
                                         extra={"shards": [0]})
    plan = retrain_plan(dataset, registry_url, ["mask-ae"])
    assert not plan.needed and plan.reason.startswith("nothing to do")
    write_learnable_shard(dataset, 1, [4, 5, 6, 7])
    plan = retrain_plan(dataset, registry_url, ["mask-ae"])
    assert plan.needed and plan.new_shards == (1,) and "1 new shard(s)" in plan.reason
