"""The steps of an edit-dataset run that the Prefect flow composes: plan, shard, summarise.

Layout and guarantees are synth-data's (storage.dataset_index): shard tars with one sample per
source photo, a parquet manifest per shard (the inversion w+ as a vector column), the stats
file last as the completion marker, dataset.json with the spec's hash, the model versions and
every weight digest. A rerun skips complete shards and redoes the others; a rerun with another
spec, input, models or weights into the same --out is refused unless --overwrite.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mm2latent import __version__
from mm2latent.alignment import check_looks_aligned
from mm2latent.conditions import load_photo
from mm2latent.edit_dataset.models import (EditModels, load_edit_models, model_digests, network_digests,
                                           registered_versions)
from mm2latent.edit_dataset.params import EditDatasetParams
from mm2latent.edit_dataset.sample import edit_members
from mm2latent.edit_dataset.spec import EditSpec, parse_spec
from mm2latent_core.errors import DatasetError, Mm2LatentError
from mm2latent.modalities.registry import default_registry
from mm2latent.presets import get_preset
from mm2latent.training.registry import default_registry_url
from storage.dataset_index import (DatasetIndex, ShardStats, begin_shard, check_compatible, commit_shard, prepare_output,
                                   read_shard_stats, shard_name, shard_url)
from storage.manifest import failed_row, ok_row
from storage.readers import read_vectors
from storage.samples import list_images, read_bytes
from storage.shard_writer import TarShardWriter, sample_key

ProgressFn = Callable[[int], None]
W_PLUS = "w_plus"  # manifest vector column: the flattened e4e inversion


@dataclass(frozen=True)
class EditPlan:
    """Everything a run needs, resolved before anything is written."""

    params: EditDatasetParams
    spec: EditSpec
    sources: tuple[str, ...]  # photo references (file URLs or DATASET#INDEX), sample i = sources[i]
    index: DatasetIndex       # the dataset.json this run writes

    @property
    def n_shards(self) -> int:
        """Number of shards."""
        return -(-len(self.sources) // self.params.samples_per_shard)


def list_sources(input_url: str) -> list[str]:
    """Photo references: the ok samples of a synth-data dataset, else the folder's image files."""
    if DatasetIndex.exists(input_url):
        return [f"{input_url}#{int(i)}" for i in read_vectors(input_url, columns=())["index"]]
    return list_images(input_url)


def _index(params: EditDatasetParams, spec: EditSpec, sources: list[str], cache_dir: Path | None) -> DatasetIndex:
    preset = get_preset(params.preset)
    registry = default_registry_url(params.models)
    versions = registered_versions(preset, registry, spec.modalities(), cache_dir)
    num_ws, w_dim = preset.e4e.n_styles, preset.generator.w_dim
    parameters = {"kind": "edit-dataset", "input": params.input, "spec_sha256": spec.sha256,
                  "spec": spec.to_json(), "model_versions": versions,
                  "sources_sha256": hashlib.sha256("\n".join(sources).encode()).hexdigest()}
    weights = network_digests(preset, spec.modalities(), cache_dir) | model_digests(registry, versions, cache_dir)
    return DatasetIndex(preset=params.preset, parameters=parameters, weights=weights,
                        software_version=__version__, samples_per_shard=params.samples_per_shard,
                        vector_dims={W_PLUS: num_ws * w_dim}, num_samples=len(sources),
                        shards=[shard_name(i) for i in range(-(-len(sources) // params.samples_per_shard))])


def validate(params: EditDatasetParams, overwrite: bool = False, cache_dir: Path | None = None) -> EditPlan:
    """Every check of a run, writing nothing: spec, input, models, reuse of --out."""
    spec = parse_spec(read_bytes(params.spec, "edit spec").decode(), params.spec)
    sources = list_sources(params.input)
    index = _index(params, spec, sources, cache_dir)
    if not overwrite and DatasetIndex.exists(params.out):
        existing = DatasetIndex.read(params.out)
        check_compatible(existing.fingerprint(), index.fingerprint(), params.out)
        if existing.num_samples != index.num_samples:
            raise DatasetError(f"{params.out} holds {existing.num_samples} edited photos but the input "
                               f"has {index.num_samples}. Fix: --overwrite, or a new --out.")
    return EditPlan(params, spec, tuple(sources), index)


def plan(params: EditDatasetParams, overwrite: bool = False, cache_dir: Path | None = None) -> tuple[EditPlan, list[int]]:
    """Validate, write dataset.json, and return the plan and the shards still to write."""
    edit_plan = validate(params, overwrite, cache_dir)
    prepare_output(params.out, edit_plan.index, overwrite=overwrite)
    todo = [s for s in range(edit_plan.n_shards) if not _complete(edit_plan, s)]
    return edit_plan, todo


def _complete(edit_plan: EditPlan, shard: int) -> bool:
    stats = read_shard_stats(edit_plan.params.out, shard)
    wanted = len(edit_plan.params.shard_indices(shard, len(edit_plan.sources)))
    return stats is not None and stats.count == wanted


def build_models(params: EditDatasetParams, modalities: list[str], cache_dir: Path | None = None) -> EditModels:
    """The networks of a run whose spec uses `modalities`."""
    return load_edit_models(params.preset, default_registry_url(params.models), modalities,
                            params.device, cache_dir)


SampleFn = Callable[[int], tuple[dict[str, bytes], dict[str, np.ndarray]]]


def write_shard(out: str, shard: int, indices: range, make_sample: SampleFn,
                vector_dims: dict[str, int], on_progress: ProgressFn | None = None) -> ShardStats:
    """Write samples `indices` (members and manifest vectors from `make_sample`) and commit.

    An Mm2LatentError from `make_sample` (a bad input) becomes a failed manifest row; anything
    else aborts the shard, leaving no stats file, so a rerun redoes it.
    """
    begin_shard(out, shard)
    rows, written, seconds = [], [], 0.0
    with TarShardWriter(shard_url(out, shard, "tar")) as writer:
        for index in indices:
            identity = dict(key=sample_key(index), index=index, shard=shard, seed=0)  # no randomness
            start = time.perf_counter()
            try:
                members, vectors = make_sample(index)
            except Mm2LatentError as e:
                rows.append(failed_row(**identity, error=f"{type(e).__name__}: {e}"))
                continue
            writer.write(members, identity["key"])
            written.append((identity, vectors))
            seconds += time.perf_counter() - start
            if on_progress is not None:
                on_progress(1)
        tar = writer.close()
    layout = default_registry().member_exts()  # the manifest's member columns, as synth-data's
    rows += [ok_row(**ident, members=tar.members[ident["key"]], vectors=v, layout=layout)
             for ident, v in written]
    return commit_shard(out, shard, tar, rows, {"samples": seconds}, vector_dims, layout)


@torch.inference_mode()
def run_shard(edit_plan: EditPlan, models: EditModels, shard: int,
              on_progress: ProgressFn | None = None) -> ShardStats:
    """Edit every photo of `shard` and commit the shard (stats last); returns its stats."""
    def make_sample(index: int) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
        source = edit_plan.sources[index]
        photo = load_photo(source)  # a bad photo raises an Mm2LatentError: a failed row
        check_looks_aligned(photo.shape[2], photo.shape[3], what=source)
        members, w_plus = edit_members(models, edit_plan.spec, photo, {"index": index, "source": source})
        return members, {W_PLUS: w_plus}

    indices = edit_plan.params.shard_indices(shard, len(edit_plan.sources))
    return write_shard(edit_plan.params.out, shard, indices, make_sample, edit_plan.index.vector_dims,
                       on_progress)


@dataclass(frozen=True)
class EditDatasetSummary:
    """A finished edit-dataset run: totals over its shards and what was applied."""

    out: str  # dataset root
    samples: int  # source photos
    ok: int  # photos edited
    failures: int  # photos that failed (a manifest row each)
    shards: int
    edits: tuple[str, ...]  # edit names, in spec order
    spec_sha256: str  # hash of the spec and its loaded conditions
    makes_faces: bool  # False: seeded networks, the images are not faces


def summarize(edit_plan: EditPlan) -> EditDatasetSummary:
    """Totals over every shard; DatasetError if one is incomplete."""
    samples = ok = failures = 0
    for shard in range(edit_plan.n_shards):
        stats = read_shard_stats(edit_plan.params.out, shard)
        if stats is None:
            raise DatasetError(f"{edit_plan.params.out}: shard {shard} is incomplete. Fix: re-run "
                               "the same command; complete shards are skipped.")
        samples, ok, failures = samples + stats.count, ok + stats.ok, failures + stats.failures
    return EditDatasetSummary(
        out=edit_plan.params.out, samples=samples, ok=ok, failures=failures,
        shards=edit_plan.n_shards, edits=tuple(e.name for e in edit_plan.spec.edits),
        spec_sha256=edit_plan.spec.sha256, makes_faces=get_preset(edit_plan.params.preset).makes_faces)
