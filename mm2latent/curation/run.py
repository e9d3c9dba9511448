"""The steps of a curate run that the Prefect flow composes: plan, copy a shard, summarise.

A curated dataset has synth-data's layout (storage.dataset_index), so every reader and
training flow takes it unchanged: sample i of the output is the i-th selected source sample
(ascending source index); its tar members are the source's bytes under the new key, its
manifest row the source's row (seed, status, member digests, vectors) re-indexed. dataset.json
records the source's hash, the spec (and its hash) and the selected source indices, in output
order. Shards are committed stats-last, so a rerun skips complete shards and redoes the
others byte-identically; a rerun with another spec or source into the same --out is refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mm2latent import __version__
from mm2latent.curation.report import CurationReport, contact_sheet_png, histograms
from mm2latent.curation.select import AttributeReader, Selection, select
from mm2latent.curation.spec import CurationSpec
from mm2latent.modalities.registry import default_registry
from mm2latent.training.data import dataset_hash
from mm2latent_core.errors import ConfigError, DatasetError
from storage.dataset_index import (DatasetIndex, ShardStats, begin_shard, commit_shard,
                                   prepare_output, read_shard_stats, shard_name, shard_url)
from storage.atomic import atomic_write_bytes
from storage.fs import exists, join
from storage.manifest import STATUS_FAILED, failed_row, ok_row, read_manifest
from storage.samples import read_shard_members
from storage.shard_writer import TarShardWriter, sample_key

KIND = "curated"  # dataset.json parameters.kind of a curated dataset
REPORT_JSON, REPORT_PNG = "curation.json", "curation.png"  # written beside dataset.json


@dataclass(frozen=True)
class CurationPlan:
    """Everything a run needs, resolved before any shard is written."""

    source: str  # source dataset root
    out: str  # curated dataset root
    spec: CurationSpec
    source_hash: str  # training.data.dataset_hash of the source's complete shards
    selection: Selection
    index: DatasetIndex  # the dataset.json this run writes

    @property
    def n_shards(self) -> int:
        """Number of output shards."""
        return len(self.index.shards)

    def positions(self, shard: int) -> range:
        """Output indices held by output shard `shard`."""
        per = self.index.samples_per_shard
        return range(shard * per, min((shard + 1) * per, self.index.num_samples))


def curated_parameters(source_hash: str, spec: CurationSpec, selection: Selection) -> dict:
    """dataset.json `parameters` of a curated dataset (all of it is the resume fingerprint)."""
    return {"kind": KIND, "source_hash": source_hash, "spec_sha256": spec.sha256,
            "spec": spec.to_json(), "source_indices": selection.source_indices.tolist()}


def is_complete(source: str, out: str, spec: CurationSpec) -> bool:
    """True if `out` is a finished curation of this source (as it is now) by this spec: its
    dataset.json names both hashes, every shard is complete and the report is written."""
    if not DatasetIndex.exists(out) or not exists(join(out, REPORT_JSON)):
        return False
    index = DatasetIndex.read(out)
    made = index.parameters
    if made.get("kind") != KIND or made.get("spec_sha256") != spec.sha256:
        return False
    if made.get("source_hash") != dataset_hash(source):
        return False
    return all(read_shard_stats(out, s) is not None for s in range(len(index.shards)))


def _refuse_other_run(out: str, source_hash: str, spec: CurationSpec) -> None:
    """One-line DatasetError if `out` holds a dataset made from another source or spec."""
    if not DatasetIndex.exists(out):
        return
    existing = DatasetIndex.read(out).parameters
    if existing.get("kind") != KIND:
        raise DatasetError(f"{out} holds a dataset that is not a curated one. Fix: choose a new --out.")
    for field, wanted, what in (("source_hash", source_hash, "source"),
                                ("spec_sha256", spec.sha256, "spec")):
        if existing.get(field) != wanted:
            raise DatasetError(
                f"{out} was curated from another {what} ({field} {str(existing.get(field))[:12]}, "
                f"this run {wanted[:12]}). Fix: choose a new --out, or delete {out} first.")


def validate(source: str, out: str, spec: CurationSpec, read_attributes: AttributeReader,
             samples_per_shard: int | None = None) -> CurationPlan:
    """Every check and the selection itself, writing nothing."""
    if samples_per_shard is not None and samples_per_shard <= 0:
        raise ConfigError(f"--samples-per-shard {samples_per_shard}: give a positive number.")
    if source.rstrip("/") == out.rstrip("/"):
        raise ConfigError(f"--out {out} is the source dataset itself. Fix: choose a new --out.")
    source_index = DatasetIndex.read(source)
    source_hash = dataset_hash(source)
    _refuse_other_run(out, source_hash, spec)
    selection = select(source, spec, read_attributes)
    n = len(selection.source_indices)
    if n == 0:
        raise DatasetError(f"{source}: the spec selects no sample (see what each filter removed: "
                           f"{selection.removed}). Fix: relax the filters.")
    per = samples_per_shard or source_index.samples_per_shard
    index = DatasetIndex(preset=source_index.preset,
                         parameters=curated_parameters(source_hash, spec, selection),
                         weights=dict(source_index.weights), software_version=__version__,
                         vector_dims=dict(source_index.vector_dims), samples_per_shard=per,
                         num_samples=n, shards=[shard_name(i) for i in range(-(-n // per))])
    if DatasetIndex.exists(out):
        existing = DatasetIndex.read(out)
        if existing.parameters.get("source_indices") != index.parameters["source_indices"]:
            raise DatasetError(f"{out}: the same spec now selects other samples (the source's "
                               "attributes changed). Fix: choose a new --out, or delete it first.")
        if existing.samples_per_shard != per:
            raise DatasetError(f"{out} was written with --samples-per-shard "
                               f"{existing.samples_per_shard}, this run asks {per}. Fix: drop the "
                               "flag or choose a new --out.")
    return CurationPlan(source, out, spec, source_hash, selection, index)


def plan(source: str, out: str, spec: CurationSpec, read_attributes: AttributeReader,
         samples_per_shard: int | None = None) -> tuple[CurationPlan, list[int]]:
    """Validate, write dataset.json, and return the plan and the output shards still to write."""
    curation = validate(source, out, spec, read_attributes, samples_per_shard)
    prepare_output(out, curation.index)
    todo = [s for s in range(curation.n_shards) if not _complete(curation, s)]
    return curation, todo


def _complete(curation: CurationPlan, shard: int) -> bool:
    stats = read_shard_stats(curation.out, shard)
    return stats is not None and stats.count == len(curation.positions(shard))


def _source_rows(source: str, shard: int, indices: set[int]) -> dict[int, dict]:
    """Manifest rows (column -> value) of the wanted samples of one source shard."""
    table = read_manifest(shard_url(source, shard, "parquet"))
    return {row["index"]: row for row in table.to_pylist() if row["index"] in indices}


def copy_shard(curation: CurationPlan, shard: int) -> ShardStats:
    """Write output shard `shard`: the selected samples' members and rows, re-indexed; stats last.

    Memory: the members of this output shard's samples and one source manifest at a time.
    """
    start = time.perf_counter()
    positions = curation.positions(shard)
    wanted = curation.selection.source_indices[positions.start:positions.stop]
    from_shards = curation.selection.source_shards[positions.start:positions.stop]
    members: dict[int, dict[str, bytes]] = {}
    rows: dict[int, dict] = {}
    for source_shard in np.unique(from_shards).tolist():
        mine = {int(i) for i in wanted[from_shards == source_shard]}
        rows.update(_source_rows(curation.source, source_shard, mine))
        members.update(read_shard_members(curation.source, source_shard, mine))
    layout = default_registry().member_exts()
    vector_dims = curation.index.vector_dims
    begin_shard(curation.out, shard)
    manifest, written = [], []
    with TarShardWriter(shard_url(curation.out, shard, "tar")) as writer:
        for new_index, source_index in zip(positions, wanted.tolist()):
            row = rows[source_index]
            identity = dict(key=sample_key(new_index), index=new_index, shard=shard, seed=row["seed"])
            if row["status"] == STATUS_FAILED:
                manifest.append(failed_row(**identity, error=row["error"]))
                continue
            writer.write(members[source_index], identity["key"])
            written.append((identity, {name: row[name] for name in vector_dims}))
        tar = writer.close()
    manifest += [ok_row(**ident, members=tar.members[ident["key"]], vectors=vectors, layout=layout)
                 for ident, vectors in written]
    return commit_shard(curation.out, shard, tar, manifest,
                        {"copy": time.perf_counter() - start}, vector_dims, layout)




def summarize(curation: CurationPlan, read_attributes: AttributeReader) -> CurationReport:
    """Check every shard is complete; write curation.json and curation.png; return the report."""
    for shard in range(curation.n_shards):
        if not _complete(curation, shard):
            raise DatasetError(f"{curation.out}: shard {shard} is incomplete. Fix: re-run the same "
                               "command; complete shards are skipped.")
    selection = curation.selection
    hists = histograms(curation.source, selection, read_attributes) \
        if curation.spec.attribute_columns() else []
    report = CurationReport(
        source=curation.source, out=curation.out, source_hash=curation.source_hash,
        spec_sha256=curation.spec.sha256, spec=curation.spec.to_json(), source_rows=selection.rows,
        selected=len(selection.source_indices), removed=dict(selection.removed),
        outside_cells=selection.outside_cells, not_drawn=selection.not_drawn,
        cells=list(selection.cells), histograms=hists)
    atomic_write_bytes(join(curation.out, REPORT_JSON), report.to_json_bytes())
    atomic_write_bytes(join(curation.out, REPORT_PNG),
                       contact_sheet_png(hists, f"{curation.out}: {report.selected} of {report.source_rows}"))
    return report
