"""The `curate` flow: a source dataset x a curation spec -> a new dataset in the same layout."""

from __future__ import annotations

from prefect import flow

from mm2latent.curation.report import CurationReport
from mm2latent.curation.spec import spec_from_json
from tasks.curate import copy_curated_shard, plan_curation, publish_report, write_report


@flow(name="curate")
def curate(source: str, out: str, spec: dict | None = None,
           samples_per_shard: int | None = None) -> CurationReport:
    """Filter, balance and copy the selected samples of `source` into `out`; rerun to resume.

    Args:
        source: the source dataset root (fsspec URL); its attributes must be computed.
        out: the curated dataset root.
        spec: the curation spec as a mapping (mm2latent/curation/spec.py); None = keep every
            sample that did not fail.
        samples_per_shard: samples per output shard; None = the source's.
    """
    curation, todo = plan_curation(source, out, spec_from_json(spec), samples_per_shard)
    for shard in todo:  # copying is I/O-bound and short: one shard at a time
        copy_curated_shard(curation, shard)
    report = write_report(curation)
    publish_report(report)
    return report
