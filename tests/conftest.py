"""Session-wide test setup: one isolated Prefect harness, temp result storage, no network."""

from __future__ import annotations

import os
import tempfile
import uuid

import pytest

from tests.prefect_homes import copy_prefect_home

# Prefect reads its settings when first imported, so the temp home must be in the environment
# before any test module imports prefect (pytest imports conftest first).
_PREFECT_HOME = tempfile.mkdtemp(prefix="mm2latent-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", os.path.join(_PREFECT_HOME, "storage"))
os.environ.setdefault("PREFECT_API_URL", "")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Tests must never read a user's real weights cache.
os.environ["MM2LATENT_CACHE"] = os.path.join(_PREFECT_HOME, "weights-cache")


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (temporary database) shared by every flow test in the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def mem_url():
    """A fresh memory:// directory URL, removed after the test (memory:// is process-global)."""
    from fsspec.core import url_to_fs

    url = f"memory://test-{uuid.uuid4().hex}"
    yield url
    fs, root = url_to_fs(url)
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto) on loopback for the whole session, stopped by PID."""
    from tests.s3_server import running_server

    with running_server() as server:
        yield server


@pytest.fixture
def s3(s3_server, monkeypatch):
    """(server, fresh bucket name), with fsspec's 's3' config pointing at the loopback server."""
    import fsspec.config
    from s3fs import S3FileSystem

    from tests.s3_server import new_bucket

    monkeypatch.setitem(fsspec.config.conf, "s3", s3_server.options())
    S3FileSystem.clear_instance_cache()  # instances cache their endpoint and credentials
    yield s3_server, new_bucket(s3_server)
    S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def migrated_prefect_db(tmp_path_factory):
    """A Prefect database migrated once per test process.

    A server on an empty PREFECT_HOME first applies every migration (over 10 s on 2 cores); a
    test's own PREFECT_HOME (`prefect_home`) starts from a copy of this one instead. The first
    start on an empty home is still run, by the README test's `prefect server start` and by
    benchmarks/cli_overhead.py.
    """
    import subprocess
    import sys

    home = tmp_path_factory.mktemp("prefect-migrated")
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": ""}
    subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                   env=env, check=True, capture_output=True, timeout=600)
    return home / "prefect.db"


@pytest.fixture
def prefect_home(tmp_path, migrated_prefect_db):
    """A fresh PREFECT_HOME for one test's CLI processes, its database already migrated."""
    return copy_prefect_home(migrated_prefect_db, tmp_path / "prefect")
