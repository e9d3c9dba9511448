"""A model registry shared by concurrent runs, and one that can be moved or read from elsewhere."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading

import pytest

from mm2latent.training.registry import ModelRegistry
from storage.fs import join

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


def test_two_processes_registering_at_once_get_distinct_versions_and_lose_nothing(tmp_path):
    url = str(tmp_path / "registry")
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_register_many, args=(url, who, barrier, ROUNDS))
             for who in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    _check_all_registered(url, ["a", "b"], ROUNDS)


def test_two_threads_registering_into_memory_lose_nothing(mem_url):
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_register_many, args=(mem_url, who, barrier, ROUNDS))
               for who in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
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
