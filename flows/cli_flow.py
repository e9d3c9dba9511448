"""How every CLI command that runs a Prefect flow runs it: `run_flow`, one mechanism for all.

- The API: PREFECT_API_URL's server when set, otherwise one temporary server tied to this
  process (flows/prefect_runtime.py). The console script launches it before the command's
  imports (flows/main.py); the command waits for it only here, after checking its arguments,
  so a bad value is refused at once.
- Signals: the flow runs in a worker thread while the main thread handles SIGINT / SIGTERM
  (flows/interrupts.py). A flow that reports progress stops at its next batch boundary;
  one that does not stops at once. Either way the command unwinds to exit 130 / 143 and the
  server stops with it.
- User errors: a project error (Mm2LatentError) raised inside the flow reaches the command's
  `user_errors` and is printed once, as one line. Prefect's console handler would print it
  first with a full traceback (its flow and task run loggers log every failure), so while a
  flow runs that handler skips those records; the records still go to the API, so the run's
  state and the server's logs keep the details.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

from flows.interrupts import Interrupted, StopOnSignal, run_in_worker
from flows.prefect_runtime import tied_prefect_server
from mm2latent_core.errors import Mm2LatentError

T = TypeVar("T")
ProgressFn = Callable[[int], None]
_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class _UserErrorsOffConsole(logging.Filter):
    """Drops the flow / task run records about a user error (its traceback, its Failed state)."""

    def __init__(self) -> None:
        super().__init__()
        # Names of the user errors seen in this run; Interrupted's "Crash detected!" line too:
        # the CLI says that it stopped.
        self._error_types: set[str] = {Interrupted.__name__}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(_RUN_LOGGERS):
            return True
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, Mm2LatentError):
            self._error_types.add(type(error).__name__)
            return False
        # "Finished in state Failed('Flow run encountered an exception: TrainingError: ...')"
        # (an INFO record) repeats the message the CLI prints.
        message = record.getMessage()
        return not any(f"{name}: " in message for name in self._error_types)


@contextlib.contextmanager
def _user_errors_off_console() -> Iterator[None]:
    from prefect.logging.handlers import PrefectConsoleHandler

    consoles = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    only_once = _UserErrorsOffConsole()
    for handler in consoles:
        handler.addFilter(only_once)
    try:
        yield
    finally:
        for handler in consoles:
            handler.removeFilter(only_once)


def run_flow(flow_call: Callable[[ProgressFn], T], on_progress: ProgressFn | None = None,
             between_batches: bool = True) -> T:
    """`flow_call(progress)`: run a flow the CLI way; check every argument before calling this.

    Args:
        flow_call: calls the flow, passing `progress` as its progress callback; `progress`
            calls `on_progress`, then raises Interrupted (at that batch boundary) if a signal
            asked the run to stop.
        on_progress: the command's own callback (its progress bar), if any.
        between_batches: False for a flow that reports no progress: a signal stops it at once.
    """
    with tied_prefect_server(), StopOnSignal(between_batches) as stop, _user_errors_off_console():
        def progress(count: int) -> None:
            if on_progress is not None:
                on_progress(count)
            stop.check()

        return run_in_worker(lambda: flow_call(progress))
