"""Prefect task that clears what killed writers left under output directories."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from storage.atomic import STALE_WRITE_S, clean_interrupted_writes


@task(name="clean-interrupted-writes", cache_policy=NO_CACHE)
def clean_interrupted(urls: list[str], older_than_s: float = STALE_WRITE_S) -> list[str]:
    """Remove temp files and abort unfinished uploads older than `older_than_s` under each URL."""
    # storage.atomic logs what it removed; duplicates (registry inside out) are cleaned once.
    return [path for url in dict.fromkeys(urls) for path in clean_interrupted_writes(url, older_than_s)]
