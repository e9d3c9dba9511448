"""Ctrl-C / SIGTERM for long CLI runs, and a temporary Prefect server that cannot outlive the CLI.

Prefect starts its temporary API server (uvicorn) as a child in the CLI's process group, so a
terminal's Ctrl-C reaches the server too: the run lost its API, kept writing shards and retried
the dead server for minutes. And a `kill -9` of the CLI left the server running. Here the CLI
starts that server itself in its own session (Ctrl-C in the terminal no longer reaches it) and,
on Linux, with a parent-death signal, so the kernel stops it when the CLI dies in any way.

`StopOnSignal` turns SIGINT / SIGTERM into a flag that the progress callback checks after each
batch: the run stops between batches, the shard in progress is never committed (its stats
marker, written last, is missing), and the CLI exits 130 (SIGINT) or 143 (SIGTERM). A second
Ctrl-C stops at once. The flow runs in a worker thread (`run_in_worker`): Prefect's flow engine
replaces the SIGTERM handler of the main thread for a run (to raise mid-batch), which it cannot
do from another thread, so the main thread keeps ours.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar
from unittest import mock

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
T = TypeVar("T")


class Interrupted(BaseException):
    """Raised at a batch boundary after SIGINT / SIGTERM (BaseException: no task retry catches it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell convention: 128 + signal number (130 Ctrl-C, 143 SIGTERM)."""
        return 128 + self.signum


class StopOnSignal:
    """While active, SIGINT / SIGTERM set a flag; `check()` raises Interrupted once it is set."""

    def __init__(self) -> None:
        self._signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if self._signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, mid-batch
        self._signum = signum

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def check(self, *_: object) -> None:
        """Raise Interrupted if a stop was requested (call between batches)."""
        if self._signum is not None:
            raise Interrupted(self._signum)


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@contextlib.contextmanager
def tied_prefect_server() -> Iterator[None]:
    """Run the block against a temporary Prefect server tied to this process, unless
    PREFECT_API_URL names a server already (then nothing changes)."""
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return

    class TiedServer(SubprocessASGIServer):
        _instances: dict = {}  # not shared with Prefect's own (port -> server) singletons

        def _run_uvicorn_command(self) -> subprocess.Popen:
            popen = subprocess.Popen

            def tied(*args, **kwargs):
                return popen(*args, start_new_session=True, preexec_fn=_die_with_parent, **kwargs)

            with mock.patch.object(subprocess, "Popen", tied):
                return super()._run_uvicorn_command()

    server = TiedServer()
    server.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield
            finally:
                # Ship the run's buffered logs while the server still answers; otherwise
                # Prefect's log worker flushes at exit into a stopped server and prints an error.
                APILogWorker.drain_all(timeout=5)
    finally:
        server.stop()


def run_in_worker(fn: Callable[[], T]) -> T:
    """`fn()` in a daemon thread (with this thread's context variables, e.g. Prefect settings)
    while the main thread waits, still handling signals; its exception is re-raised here."""
    context = contextvars.copy_context()
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = context.run(fn)
        except BaseException as e:  # handed to the main thread, which re-raises it
            outcome["error"] = e

    worker = threading.Thread(target=target, name="mm2latent-flow", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)  # short waits: Python runs signal handlers between them
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
