"""`mm2latent dataset curate` in a subprocess: a run, a refused rerun, and resume after kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.test_curation import SPEC, curate, make_source

MM2LATENT = str(Path(sys.executable).with_name("mm2latent"))


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(home), PREFECT_API_URL="",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300")  # a busy CI machine
    return env


def _shard_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard-*")) if not p.name.endswith(".stats.json")}


def test_cli_curates_with_a_spec_and_flags_then_refuses_another_spec(tmp_path, prefect_home):
    source = make_source(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text("filters: {min_face_share: 0.1}\nbalance:\n  attributes:\n"
                    "    glasses: {column: mask.eyeglasses, threshold: 0.1}\n")
    out = tmp_path / "curated"
    args = [MM2LATENT, "dataset", "curate", source, "--out", str(out), "--spec", str(spec),
            "--n", "12", "--range", "deca.yaw_deg=-55:55", "--dedupe", "w:0.99",
            "--samples-per-shard", "5"]
    done = subprocess.run(args, capture_output=True, text=True, env=_env(prefect_home), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "12 of 60 samples selected" in done.stdout
    index = json.loads((out / "dataset.json").read_text())
    assert index["num_samples"] == 12 and len(index["shards"]) == 3
    assert index["parameters"]["spec"]["filters"]["ranges"] == {"deca.yaw_deg": [-55.0, 55.0]}
    assert (out / "curation.png").exists()

    again = subprocess.run(args[:-6] + ["--n", "10"], capture_output=True, text=True,
                           env=_env(prefect_home), timeout=300)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "curated from another spec" in lines[0], again.stderr

    bad = subprocess.run([MM2LATENT, "dataset", "curate", source, "--out", str(tmp_path / "x"),
                          "--balance", "mask.eyeglasses"], capture_output=True, text=True,
                         env=_env(prefect_home), timeout=300)
    assert bad.returncode == 2 and "COLUMN>=THRESHOLD" in bad.stderr
    assert not (tmp_path / "x").exists()


KILLED_RUN = """
import os, signal, json
from mm2latent.curation import run
from mm2latent.curation.attributes_input import read_attribute_shards
from mm2latent.curation.spec import spec_from_json

original = run.TarShardWriter.write
calls = [0]
def write(self, sample, key):
    calls[0] += 1
    if calls[0] == 7:  # in the middle of the second shard
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, sample, key)
run.TarShardWriter.write = write
curation, todo = run.plan({source!r}, {out!r}, spec_from_json(json.loads({spec!r})),
                          read_attribute_shards, 4)
for shard in todo:
    run.copy_shard(curation, shard)
"""


def test_resume_after_kill_9_is_byte_identical(tmp_path, prefect_home):
    source = make_source(tmp_path)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    curate(source, str(reference))
    script = KILLED_RUN.format(source=source, out=str(resumed), spec=json.dumps(SPEC))
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                            text=True, env=_env(prefect_home), timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert (resumed / "shard-000000.stats.json").exists()
    assert not (resumed / "shard-000001.stats.json").exists()
    assert list(resumed.glob(".*.tmp-*"))  # the killed shard's temp file is left behind
    curation = curate(source, str(resumed))
    assert curation.n_shards == 4
    assert _shard_files(resumed) == _shard_files(reference)
    assert not list(resumed.glob(".*.tmp-*"))


def test_inspect_of_a_curated_dataset_summarises_its_source_indices(tmp_path):
    source = make_source(tmp_path, n_shards=4, per_shard=150, failed=frozenset({5}))
    out = str(tmp_path / "curated")
    curate(source, out, {"n": 590, "seed": 0}, per_shard=200)
    chosen = json.loads((tmp_path / "curated" / "dataset.json").read_text())["parameters"]["source_indices"]
    done = subprocess.run([MM2LATENT, "dataset", "inspect", out], capture_output=True, text=True,
                          env=_env(tmp_path / "prefect"), timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(chosen) == 590 and len(done.stdout) < 2000, done.stdout  # the list was ~3 kB alone
    first, last = ", ".join(map(str, chosen[:3])), ", ".join(map(str, chosen[-3:]))
    assert f"source_indices=[590 values: {first}, ..., {last}]" in done.stdout
    full = subprocess.run([MM2LATENT, "dataset", "inspect", out, "--json"], capture_output=True,
                          text=True, env=_env(tmp_path / "prefect"), timeout=300)
    assert json.loads(full.stdout)["parameters"]["source_indices"] == chosen  # --json keeps all
