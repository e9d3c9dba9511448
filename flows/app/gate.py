"""Admission control: one request computes at a time, a few wait, the rest are told to retry."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from mm2latent_core.errors import Mm2LatentError


class BusyError(Mm2LatentError):
    """Too many requests at once; the page shows the message and the user retries."""


class Gate:
    """At most `max_waiting` requests queue for the networks; each waits at most `wait_s` seconds.

    The networks (and their lazily loaded parts) are shared, so computing one request at a time
    keeps results identical to the CLI's and stops one request from seeing another's state.
    """

    def __init__(self, max_waiting: int = 4, wait_s: float = 30.0) -> None:
        self.max_waiting, self.wait_s = max_waiting, wait_s
        self._slots = threading.BoundedSemaphore(max_waiting)
        self._compute = threading.Lock()

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Hold the networks for one request; BusyError when the queue is full or too slow."""
        if not self._slots.acquire(blocking=False):
            raise BusyError(f"the server is busy ({self.max_waiting} requests already waiting); "
                            "try again in a moment.")
        try:
            if not self._compute.acquire(timeout=self.wait_s):
                raise BusyError(f"the server is busy (waited {self.wait_s:g} s for the running "
                                "requests); try again in a moment.")
            try:
                yield
            finally:
                self._compute.release()
        finally:
            self._slots.release()
