"""Runs README blocks (tests/readme_blocks.py) the way a reader would: each block as a bash
script, in order, in one working directory, against the installed `mm2latent`.

Every block runs in its own process group (its own session), so whatever it starts, servers it
sends to the background included, is stopped by that group's id when the run ends, also when
a block fails or times out.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.readme_blocks import Block

# Line 1 of every script; the README's own lines follow, so bash's LINENO - 1 is the line in
# the block. The ERR trap names the command that failed and its line.
_PRELUDE = ("set -eo pipefail; trap 'rc=$?; echo \"readme-test: line $((LINENO - 1)) of the "
            "block exited $rc: $BASH_COMMAND\" >&2' ERR")
_FAILED_AT = re.compile(r"readme-test: line (\d+) of the block exited (\d+): (.*)")
STDERR_TAIL_LINES = 25


class BlockFailed(AssertionError):
    """A README block exited non-zero, timed out, or left an expected output missing."""


@dataclass
class _Started:
    """A block's process and where its output goes."""

    block: Block
    proc: subprocess.Popen
    log: Path


@dataclass
class ReadmeSession:
    """Runs blocks in `workdir` with `env`; `close()` stops every process group it started."""

    workdir: Path
    env: dict[str, str]
    block_timeout_s: float = 1800.0  # a block that runs longer fails (and is stopped)
    ready_timeout_s: float = 300.0  # how long a background block may take to answer
    started: list[_Started] = field(default_factory=list)

    def run(self, block: Block) -> tuple[float, float]:
        """Run `block` (or start it, for a background block); return the seconds it took on
        the clock and in CPU (user + system of the block's processes, once they are reaped:
        what it costs whatever else loads the machine)."""
        began, cpu_began = time.monotonic(), _children_cpu_s()
        started = self._start(block)
        if block.background:
            self._wait_ready(started)
        else:
            try:
                started.proc.wait(timeout=self.block_timeout_s)
            except subprocess.TimeoutExpired:
                _stop_group(started.proc)
                raise BlockFailed(_report(started, f"timed out after {self.block_timeout_s:.0f} s"))
            if started.proc.returncode != 0:
                raise BlockFailed(_report(started, f"exit code {started.proc.returncode}"))
        missing = [p for p in block.expected_outputs() if not (self.workdir / p).exists()]
        if missing:
            raise BlockFailed(_report(started, "exit code 0, but expected output(s) missing: "
                                      + ", ".join(missing)))
        return time.monotonic() - began, _children_cpu_s() - cpu_began

    def _start(self, block: Block) -> _Started:
        logs = self.workdir / ".readme-test-logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"block-{block.index:02d}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(["bash", "-c", f"{_PRELUDE}\n{block.code}\n"],
                                    cwd=self.workdir, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=sink, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        started = _Started(block, proc, log)
        self.started.append(started)
        return started

    def _wait_ready(self, started: _Started) -> None:
        """Until every ready address of a background block answers (or its script fails)."""
        deadline = time.monotonic() + self.ready_timeout_s
        for address in started.block.ready:
            while not _answers(address):
                if started.proc.poll() not in (None, 0):
                    raise BlockFailed(_report(started, f"exit code {started.proc.returncode} "
                                              f"before {address} answered"))
                if time.monotonic() > deadline:
                    raise BlockFailed(_report(started, f"{address} did not answer within "
                                              f"{self.ready_timeout_s:.0f} s"))
                time.sleep(0.5)

    def close(self) -> None:
        """Stop every process group this session started, newest first."""
        for started in reversed(self.started):
            _stop_group(started.proc)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _answers(address: str) -> bool:
    """Whether a loopback address accepts a TCP connection (tcp://) or answers HTTP (http://)."""
    parts = urlsplit(address)
    try:
        if parts.scheme == "tcp":
            with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
                return True
        return httpx.get(address, timeout=2.0).status_code < 500
    except (OSError, httpx.HTTPError):
        return False


def _stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the block's process group, SIGKILL what is left after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(proc.pid):
        proc.poll()  # reaps the leader, so an empty group stops answering kill(0)
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _report(started: _Started, problem: str) -> str:
    """Which block, which README line and command, what happened, and the output's last lines."""
    block = started.block
    output = started.log.read_text(errors="replace").splitlines()
    where = ""
    for line in reversed(output):
        if (failed := _FAILED_AT.match(line)) is not None:
            where = (f"\n  failed at README.md line {block.line + int(failed.group(1))}: "
                     f"{failed.group(3)}")
            break
    commands = "\n".join(f"  line {n}: $ {c}" for n, c in block.commands())
    tail = "\n".join(f"  | {line}" for line in output[-STDERR_TAIL_LINES:])
    return (f"{block.label}: {problem}{where}\n{commands}\n"
            f"last {STDERR_TAIL_LINES} lines of its output ({started.log}):\n{tail}")
