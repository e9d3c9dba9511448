"""The Prefect API a CLI command runs its flow against: one temporary server tied to the process.

When PREFECT_API_URL names a server, flows use it. Otherwise the CLI starts Prefect's temporary
API server (uvicorn) itself, instead of letting Prefect start its "ephemeral" one:
- in its own session, so a terminal's Ctrl-C reaches the CLI only (the CLI then stops between
  batches and stops the server); and, on Linux, with a parent-death signal, so the kernel stops
  the server when the CLI dies in any way (kill -9 included);
- with patience: Prefect waits 20 s for its ephemeral server, which a busy machine or a first
  start (it migrates a fresh SQLite database under PREFECT_HOME) overruns. Here the wait is
  minutes, or Prefect's own PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS where the user set
  it; and a server that exits while starting is reported at once, not after the whole wait;
- quietly: the server's output goes to a log file, named in the one-line error if it fails.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mm2latent_core.errors import Mm2LatentError

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# Minutes, not Prefect's 20 s: a first start migrates the database, and on a loaded 2-core
# machine that alone has taken over 20 s.
DEFAULT_STARTUP_TIMEOUT_S = 300.0
_PORT_ATTEMPTS = 5  # a port found free can be taken before uvicorn binds it
_EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception)\b.*:")
_FIX = ("Or run one server for all commands: start `prefect server start` in another terminal "
        "and set PREFECT_API_URL=http://127.0.0.1:4200/api.")


class PrefectServerError(Mm2LatentError):
    """The temporary Prefect API server could not be started (timeout, crash, port, disk)."""


class PrefectServerCrashed(PrefectServerError):
    """The server exited while starting; the message names its log file, which is kept."""


def startup_timeout_s() -> float:
    """Seconds to wait for the temporary server: the user's Prefect setting, if set, else minutes."""
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return float(ephemeral.startup_timeout_seconds)
    return DEFAULT_STARTUP_TIMEOUT_S


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the parent dies (Linux; elsewhere a no-op)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _cause(log: Path) -> str:
    """The server log's last exception line (e.g. `sqlite3.OperationalError: unable to open
    database file`), else its last line: uvicorn's own last words only say that start-up failed."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (errors or lines or ["(no output)"])[-1]


def _free_port() -> int:
    """A port the OS reports free now (uvicorn may still lose it to another process: retried)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TiedServer:
    """Prefect's API (its uvicorn command line, as Prefect runs its ephemeral server) in a
    child process of this one; the CLI never imports the server code itself (seconds).

    `launch()` starts the process without waiting, so a command can start it first and import
    its own modules while the server starts; `start()` waits until it answers (launching it
    first if needed); `close()` stops it and removes its log unless a message names the log.
    """

    def __init__(self) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="mm2latent-prefect-server-",
                                                suffix=".log", delete=False)
        self._keep_log = False
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def launch(self) -> None:
        """Start uvicorn on a free port; do not wait for it."""
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--app-dir", _site_packages_of("prefect"),
             "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=_server_env(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True, preexec_fn=_die_with_parent)

    def start(self) -> None:
        """Wait until /health answers (launching first if not launched), the process exits,
        or the timeout."""
        timeout = startup_timeout_s()
        deadline = time.monotonic() + timeout
        for _ in range(_PORT_ATTEMPTS):
            if self.process is None:
                self.launch()
            if self._wait_healthy(deadline, timeout):
                return
        raise PrefectServerError(f"the temporary Prefect server lost its port to another "
                                 f"process {_PORT_ATTEMPTS} times. {_FIX}")

    def _wait_healthy(self, deadline: float, timeout: float) -> bool:
        """True once healthy; False if the port was taken meanwhile (retry another)."""
        import httpx

        with httpx.Client(timeout=10) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    return self._exited(code)
                try:
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise PrefectServerError(
                        f"the temporary Prefect server did not answer within {timeout:.0f} s "
                        "(a busy machine, or a first start migrating the database under "
                        "PREFECT_HOME, can be slow). Fix: wait longer with "
                        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=900. " + _FIX)
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop uvicorn (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    @property
    def closed(self) -> bool:
        """Whether `close()` ran: a closed server cannot be launched again."""
        return self._log.closed

    def close(self) -> None:
        """Stop the server and remove its log, unless an error message names the log."""
        self.stop()
        if not self._log.closed:
            self._log.close()
            if not self._keep_log:
                os.unlink(self._log.name)

    def _exited(self, code: int) -> bool:
        self.process = None
        self._log.flush()
        log = Path(self._log.name)
        if "address already in use" in log.read_text(errors="replace").lower():
            return False
        self._keep_log = True  # the message names it
        raise PrefectServerCrashed(
            f"the temporary Prefect server exited with code {code} while starting: "
            f"{_cause(log)} (full log: {log}). Fix: check free disk space and "
            f"permissions under PREFECT_HOME ({_prefect_home()}). " + _FIX)


# The server of the enclosing `launched_early` block, if any (see there).
_LAUNCHED_EARLY: contextvars.ContextVar[TiedServer | None] = contextvars.ContextVar(
    "mm2latent_launched_early", default=None)


def _site_packages_of(package: str) -> str:
    """The directory `package` is imported from, found without importing it."""
    return str(Path(importlib.util.find_spec(package).origin).parents[1])


def _server_env() -> dict[str, str]:
    """The server's environment: this process's, plus Prefect settings changed in-process.

    Before prefect is imported no setting can have been changed in-process, so the environment
    (and the profile and .env files, which the server reads itself) is the whole configuration:
    an early launch need not import prefect, which takes seconds.
    """
    # The server serves this one command's flow runs, which use no Prefect blocks: registering
    # Prefect's block types in its database costs seconds at a first start (the user may set it).
    env = {"PREFECT_API_BLOCKS_REGISTER_ON_START": "false", **os.environ,
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    if "prefect.settings" in sys.modules:
        from prefect.settings import get_current_settings

        env.update(get_current_settings().to_environment_variables(exclude_unset=True))
    return env


def _prefect_home() -> str:
    from prefect.settings import get_current_settings

    return str(get_current_settings().home)


@contextlib.contextmanager
def launched_early(wanted: bool) -> Iterator[TiedServer | None]:
    """A tied server launched now, without waiting, when `wanted` and PREFECT_API_URL is not in
    the environment; None otherwise. Stopped when the block ends, whether used or not.

    The console script calls this before importing the command's modules (torch, prefect:
    seconds), so that the server starts while they import; `tied_prefect_server()` inside the
    block then waits for this server instead of launching one. The block's server is held in a
    context variable, set for the block only, so the commands between need not pass it on.
    """
    if not wanted or os.environ.get("PREFECT_API_URL"):
        yield None
        return
    server = TiedServer()
    token = _LAUNCHED_EARLY.set(server)
    try:
        server.launch()
        yield server
    finally:
        _LAUNCHED_EARLY.reset(token)
        server.close()


@contextlib.contextmanager
def tied_prefect_server() -> Iterator[None]:
    """Run the block against a temporary Prefect server tied to this process, unless
    PREFECT_API_URL names a server already (then nothing changes, and a server from an
    enclosing `launched_early`, launched before the settings could be read, is stopped unused).
    Inside `launched_early` the block uses that server (once); otherwise it launches one.
    """
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    early = _LAUNCHED_EARLY.get()
    if early is not None and early.closed:
        early = None  # used by an earlier block
    if PREFECT_API_URL.value():
        if early is not None:
            early.close()
        yield
        return
    server = early or TiedServer()
    try:
        server.start()
        # No UI URL: Prefect would print "View at http://127.0.0.1:<port>/runs/..." for every
        # run, a page of a server that serves no UI and is gone when the command ends.
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_UI_URL: ""}):
            try:
                yield
            finally:
                # Ship the run's buffered logs while the server still answers; otherwise
                # Prefect's log worker flushes at exit into a stopped server and prints an error.
                APILogWorker.drain_all(timeout=5)
    finally:
        server.close()
