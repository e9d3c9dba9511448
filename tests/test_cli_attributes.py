"""`mm2latent dataset attributes` and `dataset captions` as users run them: a subprocess on a tiny dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mm2latent.attributes import run
from mm2latent.fabricate.datasets import TINY_DIMS, write_dataset
from storage.attributes import attribute_dirs, iter_attribute_shards
from storage.captions import caption_dirs, read_caption_shard

CLI = [str(Path(sys.executable).with_name("mm2latent")), "dataset"]


def _cli(home: Path, *args: str, command: str = "attributes") -> subprocess.CompletedProcess:
    env = dict(os.environ, PREFECT_API_URL="", PREFECT_HOME=str(home),
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="240")
    return subprocess.run([*CLI, command, *args], env=env, capture_output=True, text=True, timeout=900)


def test_attributes_cli_writes_every_source_and_leaves_nothing_to_redo(tmp_path, prefect_home):
    dataset = str(tmp_path / "data")
    write_dataset(dataset, n_shards=2, per_shard=3, failed={4}, dims={**TINY_DIMS, "farl": 512})
    done = _cli(prefect_home, dataset)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "6 shard file(s) written, 0 already complete" in done.stdout
    assert "meaningless" in done.stderr  # tiny: random networks
    assert [d.split("-")[0] for d in attribute_dirs(dataset)] == ["deca", "farl", "mask"]
    table = dict(iter_attribute_shards(dataset))[1]
    assert table["index"].to_pylist() == [3, 4, 5]
    assert {"mask.eyeglasses", "deca.yaw_deg", "farl.Eyeglasses"} <= set(table.column_names)
    assert run.plan(dataset).todo == {}  # a rerun resumes: nothing left (tests/test_attributes.py)
    captioned = _cli_captions(prefect_home, dataset)
    assert captioned.returncode == 0, captioned.stderr[-2000:]
    assert "2 shard(s) written, 0 already complete. First: " in captioned.stdout
    assert "This woman " in captioned.stdout or "This man " in captioned.stdout  # farl.Male known
    (folder,) = caption_dirs(dataset)
    assert read_caption_shard(dataset, folder, 1)["caption"].null_count == 1  # the failed sample


def _cli_captions(prefect_home: Path, dataset: str) -> subprocess.CompletedProcess:
    return _cli(prefect_home, dataset, command="captions")


def test_attributes_cli_bad_source_is_one_line_and_exit_2(tmp_path, prefect_home):
    dataset = str(tmp_path / "data")
    write_dataset(dataset, n_shards=1, per_shard=2)
    done = _cli(prefect_home, dataset, "--sources", "mask,glasses")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unknown attribute source 'glasses'; known: mask, deca, farl. Fix: pick some of "
        "those with --sources."]
    assert not attribute_dirs(dataset)
