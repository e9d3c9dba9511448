"""The `edit-dataset` flow: photos (a folder or a synth-data dataset) x an edit spec -> shards."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow

from mm2latent.edit_dataset.params import parse_edit_params
from mm2latent.edit_dataset.run import EditDatasetSummary, summarize
from tasks.edit_dataset import edit_shard, plan_edits, publish_contact_sheet


@flow(name="edit-dataset")
def edit_dataset(input: str, spec: str, models: str = "runs/tiny", out: str = "data/edits",
                 preset: str = "tiny", samples_per_shard: int = 64, device: str = "cpu",
                 overwrite: bool = False, on_progress: Callable[[int], None] | None = None
                 ) -> EditDatasetSummary:
    """Edit every photo of `input` by every edit of `spec` into `out`; rerun to resume.

    Args:
        input: folder / fsspec URL of FFHQ-aligned photos, or a synth-data dataset root.
        spec: URL of the YAML edit spec (see mm2latent/edit_dataset/spec.py).
        models: the `mm2latent train --out` directory holding the registry.
        out: output dataset root.
        preset: preset the models were trained with.
        samples_per_shard: photos per shard.
        device: torch device.
        overwrite: replace an existing dataset at `out` instead of resuming it.
        on_progress: called with the number of photos already done, then with 1 per photo.
    """
    params = parse_edit_params(input=input, spec=spec, models=models, out=out, preset=preset,
                               samples_per_shard=samples_per_shard, device=device)
    edit_plan, todo = plan_edits(params, overwrite)
    if on_progress is not None:
        on_progress(len(edit_plan.sources) - sum(len(params.shard_indices(s, len(edit_plan.sources))) for s in todo))
    for shard in todo:  # one shard at a time: each already uses every core
        edit_shard(edit_plan, shard, on_progress)
    summary = summarize(edit_plan)
    publish_contact_sheet(edit_plan, summary)
    return summary
