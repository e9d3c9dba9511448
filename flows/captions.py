"""The `captions` flow: templated captions of every sample from its attributes (resumable)."""

from __future__ import annotations

from prefect import flow

from mm2latent.captions.run import CaptionsSummary, summarize
from storage.captions import read_caption_shard
from tasks.captions import caption_shard, plan_captions


@flow(name="captions")
def captions(dataset: str, sources: tuple[str, ...] | None = None, seed: int = 0) -> CaptionsSummary:
    """Caption every sample of `dataset` from its attributes; rerun to resume.

    Args:
        dataset: the dataset root (run the attributes flow on it first).
        sources: attribute sources or folders to read; None = every attributes folder.
        seed: seed of the phrasing choice.
    """
    plan = plan_captions(dataset, sources, seed)
    for shard in plan.todo:
        caption_shard(plan, shard)
    first = read_caption_shard(dataset, plan.folder, plan.shards[0])["caption"].drop_null()
    return summarize(plan, first[0].as_py() if len(first) else None)
