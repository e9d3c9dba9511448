"""A real S3-compatible server (moto's server mode) on 127.0.0.1 for object-store tests.

The server runs in its own process (this module's `main`), started by the `s3` fixture in
conftest.py and stopped by its PID when the session ends. It handles one request at a time:
moto checks a conditional write (If-None-Match: *) and stores the object in two steps, so two
threads of its stock server can both pass the check, where S3 decides each request atomically;
serving requests one by one gives moto S3's per-request atomicity, which the registry's
concurrency tests rely on (clients still connect and race concurrently). Tests reach it through s3fs exactly as a user would reach MinIO
or AWS: an endpoint URL and credentials in fsspec's config (the same keys the FSSPEC_S3_*
environment variables set).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

KEY, SECRET = "testing-key", "testing-secret"  # moto accepts any credentials
_REPO_ROOT = Path(__file__).resolve().parents[1]  # where `python -m tests.s3_server` resolves


@dataclass(frozen=True)
class S3Server:
    """Where the loopback server listens and how to reach it."""

    endpoint: str  # http://127.0.0.1:<port>
    pid: int

    def options(self) -> dict:
        """s3fs keyword arguments (fsspec config for protocol 's3')."""
        return {"endpoint_url": self.endpoint, "key": KEY, "secret": SECRET}

    def env(self) -> dict[str, str]:
        """Environment variables that point a fresh `mm2latent` process at this server."""
        return {"FSSPEC_S3_ENDPOINT_URL": self.endpoint, "FSSPEC_S3_KEY": KEY,
                "FSSPEC_S3_SECRET": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server did not listen on port {port} within {timeout_s} s")


@contextmanager
def running_server() -> Iterator[S3Server]:
    """Start `moto.server` on a free loopback port; terminate that process (by PID) on exit."""
    # No skip when missing: CI must run these tests, and the test extra installs both.
    import moto.server  # noqa: F401 - fails loudly without the test extra (pip install -e '.[test]')
    import s3fs  # noqa: F401

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.s3_server", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=_REPO_ROOT,
                            env=os.environ | {"MOTO_ALLOW_NONEXISTENT_REGION": "true",
                                              "MOTO_PORT": str(port)})
    try:
        _wait_listening(port, proc)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}", pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def new_bucket(server: S3Server) -> str:
    """Create a fresh bucket on the server (the project itself never creates buckets)."""
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_client(server).create_bucket(Bucket=name)
    return name


def s3_client(server: S3Server):
    """A boto3 client on the server, for checks the project's code does not do itself."""
    import boto3

    return boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, region_name="us-east-1")


def one_request_at_a_time(app: Callable) -> Callable:
    """Wrap a WSGI app so that requests run one after another, each answered whole."""
    lock = threading.Lock()

    def serialized(environ: dict, start_response: Callable) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))  # the body too, before the next request

    return serialized


def main() -> None:
    """Serve moto's S3 on 127.0.0.1:--port, one request at a time (see the module docstring)."""
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    app = one_request_at_a_time(DomainDispatcherApplication(create_backend_app))
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
