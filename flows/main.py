"""The `mm2latent` console script: start a flow command's Prefect server, then the command.

A command that runs a flow needs a Prefect API server, and without PREFECT_API_URL it starts a
temporary one (flows/prefect_runtime.py). That server takes seconds to start, and so does
importing the command's modules (torch, prefect). This entry launches the server first, from
the command line's first words and without importing either, so the two overlap; the command
then waits for the server only when it runs its flow, after checking its arguments. A command
that runs no flow starts no server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

# Commands whose function calls flows.cli_flow.run_flow (tests/test_cli_flow.py checks the list).
FLOW_COMMANDS = frozenset({
    ("synth-data",), ("benchmark",), ("edit-dataset",), ("pipeline",),
    ("train", "autoencoders"), ("train", "mapping"),
    ("dataset", "attributes"), ("dataset", "captions"), ("dataset", "curate"),
})
_HELP = frozenset({"--help", "-h"})


def runs_a_flow(args: Sequence[str]) -> bool:
    """Whether `mm2latent args` runs a flow (a request for help runs nothing)."""
    if _HELP.intersection(args):
        return False
    return tuple(args[:1]) in FLOW_COMMANDS or tuple(args[:2]) in FLOW_COMMANDS


def main() -> None:
    """Entry point of the `mm2latent` console script."""
    from flows.interrupts import Interrupted, StopOnSignal
    from flows.prefect_runtime import launched_early

    # A local run starts Prefect's temporary server, whose usage telemetry would try the
    # network on every run (and log an error offline). Users can still opt in explicitly.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        # Ctrl-C / SIGTERM unwind any command (temp files removed, servers stopped) to exit
        # 130 / 143 instead of killing it mid-write; a flow run stops between its batches.
        with StopOnSignal(between_batches=False), launched_early(runs_a_flow(sys.argv[1:])):
            from flows.cli import app  # seconds: torch, and each command's modules

            app()  # a flow command's run_flow waits for the server launched above
    except Interrupted as e:
        from flows.cli_common import console

        console(stderr=True).print(f"[yellow]Stopped[/] ({e}); finished outputs are kept.")
        sys.exit(e.exit_code)
