"""Prefect tasks of the curate flow: each calls one library function."""

from __future__ import annotations

import base64

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mm2latent.curation import run
from mm2latent.curation.attributes_input import read_attribute_shards
from mm2latent.curation.report import CurationReport, markdown
from mm2latent.curation.spec import CurationSpec
from storage.dataset_index import ShardStats
from storage.fs import join, read_file


@task(name="plan-curation", cache_policy=NO_CACHE)
def plan_curation(source: str, out: str, spec: CurationSpec, samples_per_shard: int | None
                  ) -> tuple[run.CurationPlan, list[int]]:
    """Select the samples, write dataset.json; return the plan and the shards to write."""
    curation, todo = run.plan(source, out, spec, read_attribute_shards, samples_per_shard)
    get_run_logger().info("%d samples selected; %d of %d shards to write into %s",
                          len(curation.selection.source_indices), len(todo), curation.n_shards, out)
    return curation, todo


@task(name="copy-curated-shard", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2,
      task_run_name="copy-shard-{shard:06d}")
def copy_curated_shard(curation: run.CurationPlan, shard: int) -> ShardStats:
    """Copy the selected samples of output shard `shard`; returns its stats."""
    return run.copy_shard(curation, shard)


@task(name="curation-report", cache_policy=NO_CACHE)
def write_report(curation: run.CurationPlan) -> CurationReport:
    """curation.json and curation.png beside the curated dataset."""
    return run.summarize(curation, read_attribute_shards)


@task(name="curation-artifact", cache_policy=NO_CACHE)
def publish_report(report: CurationReport) -> str:
    """A Markdown artifact: filter counts, balance cells and the histogram sheet."""
    image = base64.b64encode(read_file(join(report.out, run.REPORT_PNG))).decode()
    text = markdown(report) + f"\n\n![attribute histograms](data:image/png;base64,{image})"
    return str(create_markdown_artifact(text, key="curation-report"))
