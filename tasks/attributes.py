"""Prefect tasks of the attributes flow: each calls one library function."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mm2latent.attributes import run


@task(name="plan-attributes", cache_policy=NO_CACHE)
def plan_attributes(dataset: str, sources: tuple[str, ...] | None, preset: str | None,
                    batch_size: int) -> run.AttributesPlan:
    """Validate, prepare every source once (FaRL prompts), write descriptors; the plan."""
    plan = run.plan(dataset, sources, preset, batch_size=batch_size)
    get_run_logger().info("%d of %d shard(s) to score into %s", len(plan.todo), len(plan.shards),
                          ", ".join(plan.folders()))
    return plan


@task(name="attribute-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2,
      task_run_name="attribute-shard-{shard:06d}")
def attribute_shard(plan: run.AttributesPlan, shard: int) -> int:
    """Compute and write one shard's attributes; returns the samples it covers."""
    count = run.run_shard(plan, shard)
    get_run_logger().info("shard %06d: %d samples", shard, count)
    return count
