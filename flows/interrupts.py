"""Ctrl-C / SIGTERM for long CLI runs (the temporary Prefect server: flows/prefect_runtime.py).

`StopOnSignal` turns SIGINT / SIGTERM into a flag that the progress callback checks after each
batch: the run stops between batches, the shard in progress is never committed (its stats
marker, written last, is missing), and the CLI exits 130 (SIGINT) or 143 (SIGTERM). A second
signal stops at once. Outside such runs the CLI's entry point stops at once on the first signal,
unwinding to the same exit codes. The flow runs in a worker thread (`run_in_worker`): Prefect's flow engine
replaces the SIGTERM handler of the main thread for a run (to raise mid-batch), which it cannot
do from another thread, so the main thread keeps ours.
"""

from __future__ import annotations

import contextvars
import signal
import threading
from collections.abc import Callable
from typing import TypeVar

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
    """While active, SIGINT / SIGTERM stop the run by raising Interrupted.

    between_batches=True, for a run that calls `check()` at its batch boundaries: the first
    signal only sets a flag that the next `check()` turns into Interrupted, so the batch in
    progress finishes; a second signal raises at once. between_batches=False: every signal
    raises at once in the main thread, where `finally` blocks unwind (temp files removed,
    servers stopped) instead of the process dying of the signal.
    """

    def __init__(self, between_batches: bool = True) -> None:
        self._between_batches = between_batches
        self._signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, _frame: object) -> None:
        if not self._between_batches or self._signum is not None:
            raise Interrupted(signum)  # at once (a second signal: mid-batch)
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
