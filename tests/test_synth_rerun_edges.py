"""Reruns that change a dataset's size: no shard may look complete while its files disagree."""

from __future__ import annotations

import pytest

from mm2latent_core.errors import DatasetError
from mm2latent.synth import run, shard
from storage.dataset_index import complete_shards, read_shard_stats
from tests.test_synth_pipeline import make_params, run_all


def test_redoing_a_short_shard_unmarks_it_before_rewriting(tmp_path, monkeypatch):
    run_all(make_params(tmp_path, n_samples=6))  # shards of 4 and 2
    assert complete_shards(str(tmp_path)) == [0, 1]
    grown = make_params(tmp_path, n_samples=8)
    assert run.plan(grown) == [1]

    def crash(*args, **kwargs):
        raise RuntimeError("killed while committing")

    monkeypatch.setattr(shard, "commit_shard", crash)  # the new tar is written, then the crash
    with pytest.raises(RuntimeError):
        run.run_shard(grown, 1)
    # The old 2-sample marker must not vouch for the new 4-sample tar.
    assert complete_shards(str(tmp_path)) == [0]
    monkeypatch.undo()
    assert run_all(grown) == [1]
    assert read_shard_stats(str(tmp_path), 1).count == 2 + 2


def test_shrinking_a_dataset_is_refused_without_overwrite(tmp_path):
    run_all(make_params(tmp_path, n_samples=6))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(DatasetError, match="holds 6 samples"):
        run.plan(make_params(tmp_path, n_samples=4))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert run.plan(make_params(tmp_path, n_samples=4), overwrite=True) == [0]
