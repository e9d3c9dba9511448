"""Object stores against a real S3-compatible server on loopback (moto's server mode).

The `s3` fixture points fsspec's 's3' config at the server and makes a fresh bucket; the
project never creates buckets itself.
"""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from flows.cli import app
from mm2latent_core.errors import DatasetError
from storage.atomic import AtomicFile, STALE_WRITE_S, atomic_write_bytes
from storage.dataset_index import prepare_output
from storage.fs import check_writable
from mm2latent.fabricate.datasets import make_index, write_dataset
from tests.s3_server import s3_client

PART = 5 * 2**20  # S3's smallest multipart part: a bigger write starts a multipart upload


@pytest.fixture
def small_parts(monkeypatch):
    """s3fs writers flush (and so start a multipart upload) every 5 MiB instead of 50 MiB."""
    import fsspec.config

    monkeypatch.setitem(fsspec.config.conf["s3"], "default_block_size", PART)


def _keys(server, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3_client(server).list_objects_v2(Bucket=bucket).get("Contents", []))


def _uploads(server, bucket: str) -> list[str]:
    return sorted(u["Key"] for u in s3_client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def _buckets(server) -> set[str]:
    return {b["Name"] for b in s3_client(server).list_buckets()["Buckets"]}


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, (SystemExit, type(None))), result.output
    return result


def test_a_mistyped_bucket_is_refused_not_created(s3):
    server, _ = s3
    with pytest.raises(DatasetError, match=r"bucket 'typo-bucket' does not exist at http://127\.0\.0\.1:\d+.*never creates"):
        check_writable("s3://typo-bucket/ds")
    result = _invoke(["synth-data", "--n", "2", "--out", "s3://typo-bucket/ds"])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert "typo-bucket" not in _buckets(server)


def test_grid_writes_to_the_object_store(s3, tmp_path, monkeypatch):
    server, bucket = s3
    write_dataset(f"s3://{bucket}/ds", n_shards=1, per_shard=2)
    monkeypatch.chdir(tmp_path)
    result = _invoke(["dataset", "grid", f"s3://{bucket}/ds", "--out", f"s3://{bucket}/grid.png"])
    assert result.exit_code == 0, result.output
    body = s3_client(server).get_object(Bucket=bucket, Key="grid.png")["Body"].read()
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "s3:").exists()
    refused = _invoke(["dataset", "grid", f"s3://{bucket}/ds", "--out", f"s3://{bucket}/ds/shard-000000.tar"])
    assert refused.exit_code == 2 and "of the dataset at" in refused.output


def test_wrong_endpoint_is_one_line_naming_the_url_and_the_fix(s3, monkeypatch):
    import fsspec.config
    from s3fs import S3FileSystem

    _, bucket = s3
    monkeypatch.setitem(fsspec.config.conf["s3"], "endpoint_url", "http://127.0.0.1:9")
    # Fail on the first attempt: by default s3fs and botocore retry for about 10 s.
    monkeypatch.setattr(S3FileSystem, "retries", 1)
    monkeypatch.setitem(fsspec.config.conf["s3"], "config_kwargs", {"retries": {"max_attempts": 1}})
    S3FileSystem.clear_instance_cache()
    result = _invoke(["dataset", "inspect", f"s3://{bucket}/ds"])
    assert result.exit_code == 2
    assert f"s3://{bucket}/ds: cannot reach the object store" in result.output
    assert "http://127.0.0.1:9" in result.output and "FSSPEC_S3_ENDPOINT_URL" in result.output
    assert "Traceback" not in result.output


def test_missing_credentials_are_one_line_naming_the_url_and_the_fix(s3, monkeypatch, tmp_path):
    import fsspec.config
    from s3fs import S3FileSystem

    server, bucket = s3
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": server.endpoint})
    S3FileSystem.clear_instance_cache()
    result = _invoke(["synth-data", "--n", "2", "--out", f"s3://{bucket}/ds"])
    assert result.exit_code == 2
    assert f"s3://{bucket}/ds: no usable credentials" in result.output
    assert "FSSPEC_S3_KEY" in result.output and "Traceback" not in result.output


def test_a_failed_upload_leaves_no_object_and_no_unfinished_upload(s3, small_parts):
    server, bucket = s3
    with pytest.raises(RuntimeError, match="writer crashed"):
        with AtomicFile(f"s3://{bucket}/runs/ckpt.pt") as f:
            f.write(os.urandom(PART + 1024))
            f.flush()  # a multipart upload is now in progress
            assert _uploads(server, bucket) == ["runs/ckpt.pt"]
            raise RuntimeError("writer crashed")
    assert _keys(server, bucket) == [] and _uploads(server, bucket) == []
    atomic_write_bytes(f"s3://{bucket}/runs/summary.json", b"{}")
    assert _keys(server, bucket) == ["runs/summary.json"]  # written in place: no temp object


def _abandon_upload(url: str) -> None:
    """What a killed writer leaves: a multipart upload started and never completed."""
    writer = AtomicFile(url)
    f = writer.open()
    f.write(os.urandom(PART + 1024))
    f.flush()
    f.closed = True  # the process is gone: nothing will complete or abort it


def test_unfinished_uploads_are_cleaned_in_the_root_and_when_stale_below_it(s3, small_parts, monkeypatch):
    import storage.atomic
    from tasks.storage import clean_interrupted

    server, bucket = s3
    ds = f"s3://{bucket}/ds"
    _abandon_upload(f"{ds}/shard-000000.tar")
    _abandon_upload(f"{ds}/embeddings/mask-ae-v1/shard-000000.parquet")
    _abandon_upload(f"s3://{bucket}/runs/registry/registry.json")
    # The clock is set relative to the server's own start times (moto reports a fixed date).
    started = max(u["Initiated"].timestamp() for u in
                  s3_client(server).list_multipart_uploads(Bucket=bucket)["Uploads"])
    monkeypatch.setattr(storage.atomic.time, "time", lambda: started + 60)
    prepare_output(ds, make_index(4, 2))
    # The root belongs to this run; a young upload below it may be another writer's.
    assert _uploads(server, bucket) == ["ds/embeddings/mask-ae-v1/shard-000000.parquet",
                                        "runs/registry/registry.json"]
    clean_interrupted.fn([ds, f"s3://{bucket}/runs"])
    assert len(_uploads(server, bucket)) == 2  # still young
    monkeypatch.setattr(storage.atomic.time, "time", lambda: started + 2 * STALE_WRITE_S)
    clean_interrupted.fn([ds, f"s3://{bucket}/runs"])
    assert _uploads(server, bucket) == []


def test_fsspec_s3_variables_point_a_fresh_cli_at_the_server(s3, tmp_path):
    """The README's recipe: FSSPEC_S3_ENDPOINT_URL / _KEY / _SECRET, nothing else configured."""
    import subprocess
    import sys

    server, bucket = s3
    write_dataset(f"s3://{bucket}/ds", n_shards=1, per_shard=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env |= server.env() | {"PYTHONPATH": repo, "AWS_EC2_METADATA_DISABLED": "true",
                           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    done = subprocess.run([sys.executable, "-c", "from flows.main import main; main()", "dataset",
                           "inspect", f"s3://{bucket}/ds"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "samples: 2 (2 ok, 0 failed)" in done.stdout
