"""What each artifact of the chain was made from: the asset graph the pipeline records.

weights -> dataset shards -> autoencoder -> embeddings -> MappingNet -> benchmark report.
Keys are URIs (local paths become file:// URIs); metadata carries the hashes and versions that
identify each input. Pure functions: recording them as Prefect assets is tasks/lineage.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mm2latent.presets import get_preset


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


def model_asset(record: dict, upstream: list[str]) -> AssetSpec:
    """A registered model version (an autoencoder or a MappingNet) from a registry record dict."""
    metrics = {k: v for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float))}
    meta = {"model": record["name"], "version": record["version"],
            "dataset_hash": record["dataset_hash"], "metrics": metrics}
    if record.get("extra", {}).get("embeddings_version"):
        meta["embeddings_version"] = record["extra"]["embeddings_version"]
    return AssetSpec(asset_key(record["checkpoint_url"]), f"{record['name']}-v{record['version']}",
                     tuple(sorted(upstream)), meta)


def embeddings_asset(embeddings_url: str, ae_record: dict, dataset_key: str) -> AssetSpec:
    """Per-sample embeddings written by autoencoder `ae_record` from the dataset."""
    tag = f"{ae_record['name']}-v{ae_record['version']}"
    return AssetSpec(asset_key(embeddings_url), f"embeddings {tag}",
                     (dataset_key, asset_key(ae_record["checkpoint_url"])),
                     {"autoencoder": tag, "dataset_hash": ae_record["dataset_hash"]})
