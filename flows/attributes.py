"""The `attributes` flow: per-sample attributes of a dataset, stored beside it (resumable)."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow

from mm2latent.attributes.run import AttributesSummary, summarize
from tasks.attributes import attribute_shard, plan_attributes


@flow(name="attributes")
def attributes(dataset: str, sources: tuple[str, ...] | None = None, preset: str | None = None,
               batch_size: int = 64, on_progress: Callable[[int], None] | None = None
               ) -> AttributesSummary:
    """Score every sample of `dataset` with each chosen attribute source; rerun to resume.

    Args:
        dataset: the dataset root.
        sources: attribute source names (mask, deca, farl); None = all.
        preset: preset of the scoring networks (FaRL's text tower); None = the dataset's.
        batch_size: samples computed at once (does not change the values).
        on_progress: called with the number of shards already complete, then with 1 per shard.
    """
    plan = plan_attributes(dataset, sources, preset, batch_size)
    if on_progress is not None:
        on_progress(len(plan.shards) - len(plan.todo))
    for shard in plan.todo:  # one shard at a time: each already uses every core
        attribute_shard(plan, shard)
        if on_progress is not None:
            on_progress(1)
    return summarize(plan)
