"""PREFECT_HOMEs for the CLI processes that tests start (fixtures in conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_prefect_home(migrated_db: Path, home: Path) -> Path:
    """`home` made a PREFECT_HOME holding a copy of a migrated Prefect database; returns it."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_db, home / "prefect.db")
    return home
