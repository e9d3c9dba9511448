"""Weights registry, cache, recorded digests and the `weights` CLI (loopback HTTP only)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli_weights import weights_app
from mm2latent import weights
from mm2latent.errors import (DownloadError, MissingWeightsError, UnknownWeightsError,
                              WeightsIntegrityError)
from storage.atomic import is_temp_name
from storage.download import DownloadCfg, part_path
from tests.loopback_http import LoopbackServer

BLOB = os.urandom(200_000)
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
FAST = DownloadCfg(timeout=5.0, retries=0, retry_wait=0.0, chunk_size=16_384)
UNPUBLISHED = "farl.ep16"            # registry entry without a published sha256
PUBLISHED = "clip.vit-b-32-openai"   # registry entry with a published sha256
MANUAL = "e4e.ffhq-encode"           # Google-Drive-only entry


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # Never touch the real ~/.cache even if a test forgets cache_dir.
    monkeypatch.setenv("MM2LATENT_CACHE", str(tmp_path / "env-cache"))


@pytest.fixture
def server():
    with LoopbackServer({"blob.bin": BLOB}) as srv:
        yield srv


def _point_at(monkeypatch: pytest.MonkeyPatch, name: str, url: str, **changes) -> None:
    """Redirect a registry entry to the loopback server (never the real URL)."""
    spec = dataclasses.replace(weights.WEIGHTS[name], url=url, **changes)
    monkeypatch.setitem(weights.WEIGHTS, name, spec)


def _rewrite(path: Path, data: bytes) -> None:
    """Overwrite a file in place, a clock tick after its stamp was taken.

    File times come from a coarse kernel clock (1-10 ms ticks); the sleep makes sure the edit
    lands on a later tick than the stamp, which is what the stamp policy relies on.
    """
    time.sleep(0.02)
    path.write_bytes(data)


def _flip_byte_keep_mtime(path: Path) -> bytes:
    """Change one byte in place and reset the old mtime (same size, same mtime); return it."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[1234] ^= 0xFF
    _rewrite(path, bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns
    return bytes(data)


# --- registry and cache dir ----------------------------------------------------------------


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownWeightsError) as info:
        weights.get_spec("stylegan2.ffhq")
    message = str(info.value)
    for name in weights.WEIGHTS:
        assert name in message
    assert isinstance(info.value, KeyError)


def test_registry_entries_are_consistent():
    for name, spec in weights.WEIGHTS.items():
        assert spec.name == name and name.count(".") >= 1
        assert spec.sha256 is None or (len(spec.sha256) == 64 and int(spec.sha256, 16) >= 0)
        # A fetchable entry's URL is the file itself; a manual one names a page to get it from.
        assert spec.manual != spec.url.endswith(spec.filename)
        assert not spec.manual or spec.notes
    # OpenAI CLIP URLs embed the digest that the official `clip` package checks.
    for name in ("clip.vit-b-32-openai", "clip.vit-l-14-336-openai"):
        spec = weights.get_spec(name)
        assert spec.url.split("/")[-2] == spec.sha256


def test_cache_dir_env_override_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("MM2LATENT_CACHE", str(tmp_path / "mine"))
    assert weights.cache_path(PUBLISHED) == tmp_path / "mine" / "ViT-B-32.pt"
    assert weights.cache_path(PUBLISHED, tmp_path / "x") == tmp_path / "x" / "ViT-B-32.pt"
    xdg = weights.default_cache_dir({"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert xdg == tmp_path / "xdg" / "mm2latent"
    assert weights.default_cache_dir({}) == Path.home() / ".cache" / "mm2latent"


def test_resolve_missing_names_url_and_fetch_command(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve(UNPUBLISHED, tmp_path)
    message = str(info.value)
    assert weights.get_spec(UNPUBLISHED).url in message
    assert f"mm2latent weights fetch {UNPUBLISHED} --cache-dir {tmp_path}" in message
    assert str(tmp_path / weights.get_spec(UNPUBLISHED).filename) in message


def test_resolve_missing_manual_entry_gives_notes_and_path(tmp_path):
    with pytest.raises(MissingWeightsError) as info:
        weights.resolve(MANUAL, tmp_path)
    assert "gdown 1cUv_reLE6k3604or78EranS7XzuVMWeO" in str(info.value)
    assert str(tmp_path / "e4e_ffhq_encode.pt") in str(info.value)


# --- fetch, recorded digests, stamps ---------------------------------------------------------


def test_fetch_records_digest_and_later_tamper_is_rejected(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    path = weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    recorded = json.loads((tmp_path / weights.RECORDED_FILE).read_text())
    assert recorded["entries"][UNPUBLISHED]["sha256"] == BLOB_SHA
    assert recorded["entries"][UNPUBLISHED]["size"] == len(BLOB)
    assert weights.resolve(UNPUBLISHED, tmp_path) == path

    data = bytearray(path.read_bytes())
    data[7] ^= 0x01  # same size, new mtime
    _rewrite(path, bytes(data))
    with pytest.raises(WeightsIntegrityError) as info:
        weights.resolve(UNPUBLISHED, tmp_path)
    message = str(info.value)
    assert BLOB_SHA in message and hashlib.sha256(bytes(data)).hexdigest() in message
    assert f"mm2latent weights fetch {UNPUBLISHED} --force" in message


def test_truncated_file_fails_size_check(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    path = weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    _rewrite(path, BLOB[:1000])
    result = weights.verify(UNPUBLISHED, tmp_path)
    assert result.status == "mismatch" and result.found_size == 1000
    assert result.expected_size == len(BLOB)


def test_published_digest_mismatch_keeps_nothing(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, PUBLISHED, server.url("blob.bin"))  # its real digest != BLOB's
    with pytest.raises(WeightsIntegrityError):
        weights.fetch(PUBLISHED, tmp_path, config=FAST)
    assert not weights.cache_path(PUBLISHED, tmp_path).exists()
    assert not part_path(weights.cache_path(PUBLISHED, tmp_path)).exists()
    _point_at(monkeypatch, PUBLISHED, server.url("blob.bin"), sha256=BLOB_SHA)
    assert weights.fetch(PUBLISHED, tmp_path, config=FAST).read_bytes() == BLOB
    assert UNPUBLISHED not in weights.load_recorded(tmp_path).entries


def test_resolve_trusts_stamp_but_rehashes_after_any_edit(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    path = weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    hashed: list[Path] = []
    real = weights.file_sha256
    monkeypatch.setattr(weights, "file_sha256", lambda p: hashed.append(p) or real(p))
    for _ in range(3):
        weights.resolve(UNPUBLISHED, tmp_path)
    assert hashed == []  # unchanged (size, mtime_ns, ctime_ns): no rehash
    assert weights.verify(UNPUBLISHED, tmp_path).status == "ok"
    assert hashed == [path]  # verify always rehashes

    _flip_byte_keep_mtime(path)  # resetting mtime still moves ctime
    with pytest.raises(WeightsIntegrityError):
        weights.resolve(UNPUBLISHED, tmp_path)
    assert hashed == [path, path]


def test_fetch_resumes_interrupted_download(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    server.state.mode, server.state.drop_after = "drop", 70_000
    with pytest.raises(DownloadError):
        weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    with pytest.raises(MissingWeightsError):
        weights.resolve(UNPUBLISHED, tmp_path)  # a .part is never mistaken for the file
    server.state.mode = "normal"
    weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    assert server.state.ranges[-1] == "bytes=70000-"
    assert weights.verify(UNPUBLISHED, tmp_path).status == "ok"


def test_recorded_digest_binds_refetch_until_force(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    path = weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    path.unlink()
    server.state.files["blob.bin"] = b"upstream replaced it" * 10_000
    with pytest.raises(WeightsIntegrityError, match="--force"):
        weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    assert not path.exists()
    weights.fetch(UNPUBLISHED, tmp_path, force=True, config=FAST)
    new_sha = hashlib.sha256(server.state.files["blob.bin"]).hexdigest()
    assert weights.load_recorded(tmp_path).entries[UNPUBLISHED].sha256 == new_sha


def test_fetch_skips_download_when_cached_copy_is_good(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    assert len(server.state.ranges) == 1


def test_manual_entry_first_use_records_then_detects_change(tmp_path):
    with pytest.raises(weights.ManualDownloadRequired):
        weights.fetch(MANUAL, tmp_path)
    path = weights.cache_path(MANUAL, tmp_path)
    path.write_bytes(BLOB)
    first = weights.verify(MANUAL, tmp_path)
    assert first.status == "unverified" and first.found_sha256 == BLOB_SHA
    assert weights.verify(MANUAL, tmp_path).status == "ok"
    _rewrite(path, BLOB[::-1])
    with pytest.raises(WeightsIntegrityError, match=f"verify --reset {MANUAL}"):
        weights.resolve(MANUAL, tmp_path)
    assert weights.forget_recorded(MANUAL, tmp_path)
    assert weights.verify(MANUAL, tmp_path).status == "unverified"


def test_fetch_of_a_bad_manual_file_says_it_is_bad_not_absent(tmp_path):
    path = weights.cache_path(MANUAL, tmp_path)
    path.write_bytes(BLOB)
    weights.verify(MANUAL, tmp_path)  # records its digest (trust on first use)
    _rewrite(path, BLOB[::-1])
    with pytest.raises(WeightsIntegrityError, match=f"verify --reset {MANUAL}"):
        weights.fetch(MANUAL, tmp_path)
    assert path.read_bytes() == BLOB[::-1]  # nothing replaced or deleted


def test_corrupt_recorded_json_names_file(tmp_path):
    (tmp_path / weights.RECORDED_FILE).write_text("{not json")
    with pytest.raises(WeightsIntegrityError, match=weights.RECORDED_FILE):
        weights.load_recorded(tmp_path)


def test_recorded_json_written_atomically(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    leftovers = [p.name for p in tmp_path.iterdir() if is_temp_name(p.name)]
    assert leftovers == []

    def crash(*args, **kwargs):
        raise OSError("disk full")

    before = (tmp_path / weights.RECORDED_FILE).read_text()
    monkeypatch.setattr(os, "fsync", crash)  # the temp file is written, its commit fails
    with pytest.raises(OSError):
        weights.forget_recorded(UNPUBLISHED, tmp_path)
    assert (tmp_path / weights.RECORDED_FILE).read_text() == before
    assert [p.name for p in tmp_path.iterdir() if is_temp_name(p.name)] == []


# --- CLI ---------------------------------------------------------------------------------------


def _invoke(*args: str):
    return CliRunner().invoke(weights_app, list(args), env={"COLUMNS": "250"})


def test_cli_list_shows_names_and_cached_state(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    weights.fetch(UNPUBLISHED, tmp_path, config=FAST)
    result = _invoke("list", "--cache-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    for name in weights.WEIGHTS:
        assert name in result.output
    row = next(line for line in result.output.splitlines() if UNPUBLISHED in line)
    assert "yes" in row and "195.3 KiB" in row


def test_cli_fetch_then_verify_exits_1_on_tampered_file(monkeypatch, server, tmp_path):
    _point_at(monkeypatch, UNPUBLISHED, server.url("blob.bin"))
    fetched = _invoke("fetch", UNPUBLISHED, "--cache-dir", str(tmp_path), "--retries", "0")
    assert fetched.exit_code == 0, fetched.output
    assert _invoke("verify", UNPUBLISHED, "--cache-dir", str(tmp_path)).exit_code == 0
    _flip_byte_keep_mtime(weights.cache_path(UNPUBLISHED, tmp_path))
    result = _invoke("verify", "--cache-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "MISMATCH" in result.output


def test_cli_errors_are_short_and_exit_2(tmp_path):
    result = _invoke("fetch", "no.such", "--cache-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "known:" in result.output and "Traceback" not in result.output


def test_cli_fetch_manual_entry_prints_notes_and_path(tmp_path):
    result = _invoke("fetch", MANUAL, "--cache-dir", str(tmp_path))
    assert result.exit_code == 1
    flat = " ".join(result.output.split())
    assert "manual download" in flat and str(tmp_path / "e4e_ffhq_encode.pt") in flat
