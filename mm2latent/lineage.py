"""What each artifact of the chain was made from: the asset graph the pipeline records.

weights -> dataset shards -> autoencoder -> embeddings -> MappingNet -> benchmark report.
Keys are URIs (local paths become file:// URIs); metadata carries the hashes and versions that
identify each input. Pure functions: recording them as Prefect assets is tasks/lineage.py's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from mm2latent.benchmark.records import BenchmarkSummary
from mm2latent.presets import get_preset
from mm2latent.training.registry import ModelRecord


@dataclass(frozen=True)
class AssetSpec:
    """One materialization to record."""

    key: str  # asset key, a URI
    name: str  # short human-readable name for the UI
    upstream: tuple[str, ...] = ()  # keys of the assets it was made from
    metadata: dict = field(default_factory=dict)  # JSON values: hashes, versions, digests


def asset_key(url: str) -> str:
    """The asset key of a storage URL: URLs keep their scheme, local paths become file:// URIs."""
    if "://" in url:
        return url.rstrip("/")
    return Path(url).resolve().as_uri()


def weights_keys(preset: str, digests: dict[str, str]) -> dict[str, str]:
    """component -> key of its weights: `weights://<registry name>` for a weights file,
    `weights://<preset>-seeded/<component>` for a seeded network (tiny)."""
    names = get_preset(preset).weight_names()
    return {c: f"weights://{names[c]}" if c in names else f"weights://{preset}-seeded/{c}"
            for c in digests}


def dataset_asset(dataset_url: str, preset: str, weights: dict[str, str], dataset_hash: str,
                  shards: list[int]) -> AssetSpec:
    """The dataset's shards, made by the networks whose weight digests are `weights`."""
    keys = weights_keys(preset, weights)
    return AssetSpec(asset_key(dataset_url), f"dataset {Path(dataset_url).name}",
                     tuple(sorted(keys.values())),
                     {"dataset_hash": dataset_hash, "preset": preset, "shards": len(shards),
                      "weight_digests": {keys[c]: d for c, d in sorted(weights.items())}})


def model_asset(record: ModelRecord, upstream: list[str]) -> AssetSpec:
    """A registered model version (an autoencoder or a MappingNet)."""
    metrics = {k: v for k, v in record.metrics.items() if isinstance(v, (int, float))}
    meta = {"model": record.name, "version": record.version,
            "dataset_hash": record.dataset_hash, "metrics": metrics}
    if record.extra.get("embeddings_version"):
        meta["embeddings_version"] = record.extra["embeddings_version"]
    return AssetSpec(asset_key(record.checkpoint_url), record.tag, tuple(sorted(upstream)), meta)


def embeddings_asset(embeddings_url: str, ae_record: ModelRecord, dataset_key: str) -> AssetSpec:
    """Per-sample embeddings written by autoencoder `ae_record` from the dataset."""
    return AssetSpec(asset_key(embeddings_url), f"embeddings {ae_record.tag}",
                     (dataset_key, asset_key(ae_record.checkpoint_url)),
                     {"autoencoder": ae_record.tag, "dataset_hash": ae_record.dataset_hash})


def benchmark_asset(report_url: str, mapping_record: ModelRecord, summary: BenchmarkSummary,
                    pairs_hash: str, benchmark_data: str) -> AssetSpec:
    """A benchmark report (`summary` is its summary.json) of one MappingNet version."""
    versions = {mapping_record.name: mapping_record.tag}
    embeddings = mapping_record.extra.get("embeddings_version")
    if embeddings:  # the autoencoder whose embeddings the MappingNet was trained on
        versions[embeddings.rsplit("-v", 1)[0]] = embeddings
    row = summary.row(mapping_record.tag)
    metrics = {k: value if math.isfinite(value := getattr(row, k)) else None  # NaN is not JSON
               for k in ("clip_score", "mask_accuracy", "cmmd", "images_per_s")}
    return AssetSpec(asset_key(report_url), f"benchmark {mapping_record.tag}",
                     (asset_key(mapping_record.checkpoint_url),),
                     {"model_versions": versions, "dataset_hash": mapping_record.dataset_hash,
                      "benchmark_data": benchmark_data, "pairs": row.pairs,
                      "pairs_hash": pairs_hash, "seed": summary.run.seed,
                      "makes_faces": summary.run.makes_faces, "metrics": metrics})


def attributes_asset(dataset_url: str, folders: list[str], dataset_hash: str) -> AssetSpec:
    """The dataset's per-sample attributes (one folder per producer under `<dataset>/attributes`)."""
    return AssetSpec(asset_key(f"{dataset_url.rstrip('/')}/attributes"),
                     f"attributes {Path(dataset_url).name}", (asset_key(dataset_url),),
                     {"dataset_hash": dataset_hash, "folders": sorted(folders)})


def curated_asset(curated_url: str, source_url: str, dataset_hash: str, source_hash: str,
                  spec_sha256: str, selected: int) -> AssetSpec:
    """A curated dataset: made from the source's samples, chosen by their attributes."""
    return AssetSpec(asset_key(curated_url), f"curated {Path(curated_url).name}",
                     (asset_key(source_url), asset_key(f"{source_url.rstrip('/')}/attributes")),
                     {"dataset_hash": dataset_hash, "source_hash": source_hash,
                      "spec_sha256": spec_sha256, "selected": selected})
