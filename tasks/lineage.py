"""Record the chain's lineage as Prefect assets (see mm2latent/lineage.py for the graph)."""

from __future__ import annotations

from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE

from mm2latent.lineage import AssetSpec


def _add_metadata(key: str, metadata: dict) -> str:
    """Attach `metadata` to the materialization of `key` (runs inside the materializing task)."""
    add_asset_metadata(key, metadata)
    return key


def record_asset(spec: AssetSpec) -> str:
    """Record one materialization of `spec.key` with upstream `spec.upstream`; returns the key.

    Called after the step's files are complete, so a failed step records nothing. The task is
    built per call because Prefect binds asset keys at decoration and ours are run-time URLs.
    """
    asset = Asset(key=spec.key, properties=AssetProperties(name=spec.name))
    recorder = materialize(asset, asset_deps=list(spec.upstream), cache_policy=NO_CACHE,
                           name="record-asset", task_run_name=f"asset {spec.name}")(_add_metadata)
    return recorder(spec.key, spec.metadata)
