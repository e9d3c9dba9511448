"""A model registry shared by concurrent runs, and one that can be moved or read from elsewhere."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading

import pytest

from mm2latent.training.registry import ModelRegistry
from storage.exclusive import ExclusiveCreateError
from storage.fs import join
from tests.s3_server import s3_client

ROUNDS = 40


def _register_many(registry_url: str, who: str, barrier, rounds: int) -> None:
    registry = ModelRegistry(registry_url)
    barrier.wait()  # both writers start together, so their read-then-claim steps overlap
    for i in range(rounds):
        registry.register("mask-ae", join(registry_url, f"{who}-{i}.pt"), "data", "h")


def _check_all_registered(registry_url: str, writers: list[str], rounds: int) -> None:
    records = ModelRegistry(registry_url).records("mask-ae")
    versions = [r.version for r in records]
    assert versions == list(range(1, len(writers) * rounds + 1))  # distinct, none skipped
    names = sorted(os.path.basename(r.checkpoint_url) for r in records)
    assert names == sorted(f"{w}-{i}.pt" for w in writers for i in range(rounds))  # none lost


def _run_together(make, url: str) -> list:
    """Start writers "a" and "b" (threads or processes from `make`) and wait for both."""
    workers = [make(url, who) for who in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    return workers


def test_two_processes_registering_at_once_get_distinct_versions_and_lose_nothing(tmp_path):
    url = str(tmp_path / "registry")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = _run_together(lambda u, who: ctx.Process(target=_register_many,
                                                     args=(u, who, barrier, ROUNDS)), url)
    assert [p.exitcode for p in procs] == [0, 0]
    _check_all_registered(url, ["a", "b"], ROUNDS)


def test_two_threads_registering_into_memory_lose_nothing(mem_url):
    barrier = threading.Barrier(2)
    _run_together(lambda u, who: threading.Thread(target=_register_many,
                                                  args=(u, who, barrier, ROUNDS)), mem_url)
    _check_all_registered(mem_url, ["a", "b"], ROUNDS)


@pytest.mark.parametrize("layout", ["inside", "beside"])
def test_checkpoint_locations_survive_moving_the_registry(tmp_path, monkeypatch, layout):
    root = tmp_path / "runs"
    registry_url = str(root / "registry")
    ckpt = root / "mask-ae" / "run-x" / "ckpt-000000001.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)  # registered from the directory the training ran in
    ModelRegistry("runs/registry" if layout == "inside" else registry_url).register(
        "mask-ae", "runs/mask-ae/run-x/ckpt-000000001.pt", "data", "h")
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    monkeypatch.chdir(tmp_path / "elsewhere")
    record = ModelRegistry(str(moved / "registry")).latest("mask-ae")
    assert open(record.checkpoint_url, "rb").read() == b"weights"


def test_memory_registry_resolves_relative_locations(mem_url):
    registry = ModelRegistry(join(mem_url, "registry"))
    record = registry.register("mask-ae", join(mem_url, "mask-ae", "c.pt"), "data", "h")
    assert record.checkpoint_url == join(mem_url, "mask-ae", "c.pt")
    assert registry.latest("mask-ae").checkpoint_url == join(mem_url, "mask-ae", "c.pt")


def test_generate_reads_a_registry_trained_elsewhere_from_another_directory(tmp_path, monkeypatch):
    import numpy as np
    import typer
    from typer.testing import CliRunner

    from flows.cli_generate import add_inference_commands
    from mm2latent.presets import get_preset
    from mm2latent.training.config import MappingTrainCfg
    from mm2latent.training.mapping import mapping_net_cfg
    from mm2latent.training.pipeline import mapping_run
    from mm2latent.fabricate.learnable import write_learnable_dataset

    work, other = tmp_path / "work", tmp_path / "other"
    work.mkdir()
    other.mkdir()
    monkeypatch.chdir(work)  # train with relative paths, as `mm2latent train --out runs` does
    write_learnable_dataset("data", n_shards=1, per_shard=8,
                            dims={"w": 512, "flame": 159, "farl": 512})
    cfg = MappingTrainCfg(modality="flame", epochs=1, batch_size=4, val_fraction=0.0)
    mapping_run("data", "runs", "runs/registry", mapping_net_cfg(get_preset("tiny").mapping, "flame"), cfg)
    monkeypatch.chdir(other)
    np.save(other / "code.npy", np.zeros(159, np.float32))
    app = typer.Typer()
    add_inference_commands(app)
    result = CliRunner().invoke(app, ["generate", "--text", "a face", "--flame", "code.npy",
                                      "--models", str(work / "runs"), "--out", "out.png"])
    assert result.exit_code == 0, result.output
    assert (other / "out.png").read_bytes()[:4] == b"\x89PNG"


S3_ROUNDS = 10


def test_two_processes_registering_into_an_object_store_get_distinct_versions_and_lose_nothing(s3):
    """Each record is created with a conditional write (If-None-Match: *): of two runs claiming
    one version exactly one succeeds, and the other takes the next number."""
    server, bucket = s3
    url = f"s3://{bucket}/runs/registry"
    ctx = multiprocessing.get_context("fork")  # the children inherit the fsspec config for moto
    barrier = ctx.Barrier(2)
    procs = _run_together(lambda u, who: ctx.Process(target=_register_many,
                                                     args=(u, who, barrier, S3_ROUNDS)), url)
    assert [p.exitcode for p in procs] == [0, 0]
    _check_all_registered(url, ["a", "b"], S3_ROUNDS)
    keys = [o["Key"] for o in s3_client(server).list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == [f"runs/registry/mask-ae/v{v:06d}.json"
                            for v in range(1, 2 * S3_ROUNDS + 1)]  # no probe objects left


def test_a_server_that_ignores_conditional_writes_is_refused(s3, monkeypatch):
    """An S3-compatible server that drops If-None-Match would let two runs take one version."""
    from s3fs import S3FileSystem

    _, bucket = s3
    url = f"s3://{bucket}/registry"
    plain_put = S3FileSystem._pipe_file

    async def put_ignoring_the_condition(self, path, data, mode="overwrite", **kwargs):
        return await plain_put(self, path, data, **kwargs)  # as an older server answers

    monkeypatch.setattr(S3FileSystem, "_pipe_file", put_ignoring_the_condition)
    with pytest.raises(ExclusiveCreateError, match="ignores conditional writes"):
        ModelRegistry(url).register("mask-ae", join(url, "c.pt"), "data", "h")
    assert ModelRegistry(url).records("mask-ae") == []
