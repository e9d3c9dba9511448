"""Prefect tasks of the captions flow: each calls one library function."""

from __future__ import annotations

import functools

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mm2latent.captions import run
from mm2latent.captions.embeddings import build_text_tower


@functools.lru_cache(maxsize=1)
def _tower(dataset: str) -> torch.nn.Module:
    """The dataset preset's FaRL embedder, shared by a run's shard tasks (one entry: one run's)."""
    return build_text_tower(dataset)


@task(name="plan-captions", cache_policy=NO_CACHE)
def plan_captions(dataset: str, sources: tuple[str, ...] | None, seed: int) -> run.CaptionsPlan:
    """Pick the attributes, write the descriptor; the plan."""
    plan = run.plan(dataset, sources, seed)
    get_run_logger().info("%d of %d shard(s) to caption into captions/%s", len(plan.todo),
                          len(plan.shards), plan.folder)
    return plan


@task(name="caption-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2,
      task_run_name="caption-shard-{shard:06d}")
def caption_shard(plan: run.CaptionsPlan, shard: int) -> int:
    """Caption one shard and write its captions and their text embeddings; the samples covered."""
    return run.run_shards(plan, [shard], _tower(plan.dataset))
