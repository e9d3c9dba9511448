"""A throw-away Prefect for benchmarks that time flows: its own home and a test harness server.

Shared by benchmarks/synth_data.py and benchmarks/synth_stages.py (both time the synth-data
flow), so neither imports the other for it.
"""

from __future__ import annotations

import os


def isolate_prefect(home: str) -> None:
    """Point Prefect at a throw-away home before it is first imported (as tests/conftest.py)."""
    os.environ.setdefault("PREFECT_HOME", home)
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", os.path.join(home, "storage"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def harness():
    """A Prefect test harness context (temporary database and server)."""
    from prefect.testing.utilities import prefect_test_harness

    return prefect_test_harness(server_startup_timeout=180)
