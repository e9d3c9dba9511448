"""Resumable verified download against a loopback HTTP server (no real network)."""

from __future__ import annotations

import hashlib
import os

import pytest

from mm2latent.errors import DownloadError, WeightsIntegrityError
from storage.digests import file_sha256 as sha256_file
from storage.download import DownloadCfg, download, part_path
from tests.loopback_http import LoopbackServer

BLOB = os.urandom(300_000) + bytes(range(256)) * 100  # 325,600 bytes, several chunks
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
FAST = DownloadCfg(timeout=5.0, retries=0, retry_wait=0.0, chunk_size=16_384)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server():
    with LoopbackServer({"w.bin": BLOB, "other.bin": b"x" * 1000}) as srv:
        yield srv


def test_interrupted_download_leaves_part_and_rerun_resumes_with_range(server, tmp_path):
    dest = tmp_path / "w.bin"
    server.state.mode, server.state.drop_after = "drop", 100_000
    with pytest.raises(DownloadError, match="re-run the same command to resume"):
        download(server.url("w.bin"), dest, BLOB_SHA, len(BLOB), config=FAST)
    part = part_path(dest)
    assert not dest.exists()
    assert part.stat().st_size == 100_000
    assert part.read_bytes() == BLOB[:100_000]

    server.state.mode = "normal"
    result = download(server.url("w.bin"), dest, BLOB_SHA, len(BLOB), config=FAST)
    assert server.state.ranges[-1] == "bytes=100000-"
    assert server.state.statuses[-1] == 206
    assert result.resumed_from == 100_000
    assert result.sha256 == BLOB_SHA == sha256_file(dest)
    assert dest.read_bytes() == BLOB
    assert not part.exists()


def test_retry_inside_one_call_resumes_and_reports_progress(server, tmp_path):
    dest = tmp_path / "w.bin"
    server.state.mode, server.state.drop_after = "drop", 50_000
    calls: list[tuple[int, int | None]] = []

    def flaky_then_fine(done: int, total: int | None) -> None:
        calls.append((done, total))
        server.state.mode = "normal"  # the next request is served in full

    cfg = DownloadCfg(timeout=5.0, retries=1, retry_wait=0.0, chunk_size=16_384)
    result = download(server.url("w.bin"), dest, None, None, config=cfg, progress=flaky_then_fine)
    assert server.state.ranges == [None, "bytes=50000-"]
    assert result.attempts == 2 and result.sha256 == BLOB_SHA
    assert calls[-1] == (len(BLOB), len(BLOB))  # progress counts the resumed bytes too
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(b"JUNK" * 1000)  # a stale .part that is not a prefix
    server.state.mode = "ignore_range"
    result = download(server.url("w.bin"), dest, BLOB_SHA, len(BLOB), config=FAST)
    assert server.state.ranges == ["bytes=4000-"]
    assert server.state.statuses == [200]
    assert result.resumed_from == 0
    assert dest.read_bytes() == BLOB


def test_sha_mismatch_rejected_and_existing_good_file_kept(server, tmp_path):
    dest = tmp_path / "w.bin"
    dest.write_bytes(b"the good old file")
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(WeightsIntegrityError) as info:
        download(server.url("w.bin"), dest, wrong, None, config=FAST)
    assert wrong in str(info.value) and BLOB_SHA in str(info.value)
    assert dest.read_bytes() == b"the good old file"
    assert not part_path(dest).exists()


def test_size_mismatch_rejected_before_hashing(server, tmp_path):
    dest = tmp_path / "w.bin"
    with pytest.raises(WeightsIntegrityError, match=f"has {len(BLOB)} bytes, expected 12"):
        download(server.url("w.bin"), dest, None, 12, config=FAST)
    assert not dest.exists() and not part_path(dest).exists()


def test_complete_part_is_verified_without_transfer_on_416(server, tmp_path):
    dest = tmp_path / "w.bin"
    part_path(dest).write_bytes(BLOB)  # e.g. the process died between write and rename
    result = download(server.url("w.bin"), dest, BLOB_SHA, None, config=FAST)
    assert server.state.statuses == [416]
    assert result.sha256 == BLOB_SHA and dest.read_bytes() == BLOB


def test_http_404_is_final_and_names_the_url(server, tmp_path):
    cfg = DownloadCfg(timeout=5.0, retries=3, retry_wait=0.0)
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download(server.url("absent.bin"), tmp_path / "a.bin", None, None, config=cfg)
    assert server.url("absent.bin") in str(info.value)
    assert len(server.state.ranges) == 1  # not retried


def test_unknown_sha_is_computed_and_returned(server, tmp_path):
    result = download(server.url("other.bin"), tmp_path / "sub" / "o.bin", None, None,
                      config=FAST)
    assert result.sha256 == hashlib.sha256(b"x" * 1000).hexdigest()
    assert result.size == 1000 and result.path.read_bytes() == b"x" * 1000
