"""Prefect tasks of the edit-dataset flow: each calls one library function."""

from __future__ import annotations

import base64
import functools

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mm2latent.edit_dataset import run
from mm2latent.edit_dataset.models import EditModels
from mm2latent.edit_dataset.params import EditDatasetParams
from mm2latent.edit_dataset.sheet import contact_sheet
from mm2latent.modalities.codecs import encode_png
from storage.dataset_index import ShardStats


@task(name="plan-edit-dataset", cache_policy=NO_CACHE)
def plan_edits(params: EditDatasetParams, overwrite: bool = False) -> tuple[run.EditPlan, list[int]]:
    """Validate everything and write dataset.json; return the plan and the shards to write."""
    edit_plan, todo = run.plan(params, overwrite)
    get_run_logger().info("%d of %d shards to write into %s", len(todo), edit_plan.n_shards, params.out)
    return edit_plan, todo


@functools.lru_cache(maxsize=1)
def _models(params: EditDatasetParams, modalities: tuple[str, ...], spec_sha256: str) -> EditModels:
    """The last run's networks, shared by its shard tasks (one entry: one run's networks)."""
    return run.build_models(params, list(modalities))


@task(name="edit-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2,
      task_run_name="edit-shard-{shard:06d}")
def edit_shard(edit_plan: run.EditPlan, shard: int, on_progress: run.ProgressFn | None = None) -> ShardStats:
    """Edit and commit one shard; returns its stats."""
    models = _models(edit_plan.params, tuple(edit_plan.spec.modalities()), edit_plan.spec.sha256)
    stats = run.run_shard(edit_plan, models, shard, on_progress)
    get_run_logger().info("shard %06d: %d ok, %d failed", shard, stats.ok, stats.failures)
    return stats


@task(name="edit-contact-sheet", cache_policy=NO_CACHE)
def publish_contact_sheet(edit_plan: run.EditPlan, summary: run.EditDatasetSummary, rows: int = 4) -> str:
    """A Markdown artifact: the summary and a sheet original | edits of the first photos."""
    sheet = contact_sheet(edit_plan.params.out, edit_plan.spec, list(range(min(rows, len(edit_plan.sources)))))
    data = base64.b64encode(encode_png(sheet)).decode()
    columns = " | ".join(f"{e.name} beta {b:g}" for e in edit_plan.spec.edits for b in e.edit.betas)
    lines = [f"# edit-dataset: {summary.out}", "",
             f"{summary.ok} edited, {summary.failures} failed, {summary.shards} shards; "
             f"spec sha256 `{summary.spec_sha256[:12]}`", "",
             f"Columns: original | {columns}", "", f"![contact sheet](data:image/png;base64,{data})"]
    if not summary.makes_faces:
        lines += ["", "This preset uses random-weight networks: its images are not faces."]
    return str(create_markdown_artifact("\n".join(lines), key="edit-dataset-contact-sheet"))
