"""Batch generation from a JSON-lines file: one image per row, written as synth-data-like shards.

Each line: {"text": "a smiling face", "mask": "m.png" | "sketch": ... | "flame": ..., "seed": 3}
(any condition modality of the registry is a key) with exactly one condition (a file or DATASET#INDEX) and an optional noise seed (absent =
the generator's constant noise). Row i is generated alone, so it depends only on that row,
the preset and the weights. Shards hold `<key>.png`, `<key>.w.npy` and `<key>.json` (the row);
the manifest has `w`; dataset.json records the rows' sha256, the model versions and digests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from mm2latent import __version__
from mm2latent.conditions import load_condition
from mm2latent.edit_dataset.models import EditModels, load_edit_models, model_digests, registered_versions
from mm2latent.edit_dataset.run import write_shard
from mm2latent_core.errors import ConfigError, Mm2LatentError
from mm2latent.presets import get_preset
from mm2latent.modalities.codecs import encode_png
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry
from mm2latent.synth.models import weight_digests
from mm2latent.training.registry import default_registry_url
from storage.dataset_index import DatasetIndex, ShardStats, prepare_output, read_shard_stats, shard_name
from storage.samples import read_bytes
from storage.shard_writer import encode_json, encode_npy

class _Row(BaseModel):
    """Fields of every row; row_model adds one optional field per condition modality."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1)  # caption

    @model_validator(mode="after")
    def _one_condition(self) -> _Row:
        names = self.conditions()
        if sum(getattr(self, m) is not None for m in names) != 1:
            raise ValueError(f"give exactly one of {', '.join(names)}")
        return self

    @classmethod
    def conditions(cls) -> tuple[str, ...]:
        """The condition fields, in registry order."""
        return tuple(n for n in cls.model_fields if n not in ("text", "seed"))

    @property
    def modality(self) -> str:
        """The condition's modality."""
        return next(m for m in self.conditions() if getattr(self, m) is not None)


def row_model(registry: ModalityRegistry | None = None) -> type[_Row]:
    """The row model of `registry`: text, one field per condition (a file or DATASET#INDEX),
    seed (noise seed; None = constant noise). Field order fixes the rows hash: keep it."""
    conditions = {m: (str | None, None) for m in (registry or default_registry()).conditions}
    return create_model("GenerateRow", __base__=_Row, **conditions,
                        seed=(int | None, Field(None, ge=0)))


GenerateRow = _Row  # the type of a parsed row


@dataclass(frozen=True)
class RowsPlan:
    """Parsed rows with their conditions loaded, and the dataset.json to write."""

    rows: tuple[GenerateRow, ...]
    conditions: tuple[np.ndarray, ...]
    out: str
    samples_per_shard: int
    index: DatasetIndex

    def shard_indices(self, shard: int) -> range:
        """Row indices of `shard`."""
        start = shard * self.samples_per_shard
        return range(start, min(start + self.samples_per_shard, len(self.rows)))


def parse_rows(text: str, url: str, registry: ModalityRegistry | None = None
               ) -> tuple[list[GenerateRow], list[np.ndarray]]:
    """Rows and their loaded conditions; ConfigError naming the line and field of any problem."""
    registry = registry or default_registry()
    model = row_model(registry)
    rows, conditions = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = model.model_validate(json.loads(line))
            conditions.append(load_condition(row.modality, getattr(row, row.modality), registry))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{url}:{number}: not a JSON object ({e}).") from e
        except ValidationError as e:
            problems = "; ".join(f"field {'.'.join(map(str, err['loc'])) or 'row'!r}: {err['msg']}" for err in e.errors())
            raise ConfigError(f"{url}:{number}: {problems}.") from e
        except Mm2LatentError as e:
            raise ConfigError(f"{url}:{number}: field {row.modality!r}: {e}") from e
        rows.append(row)
    if not rows:
        raise ConfigError(f"{url}: no rows; write one JSON object per line, e.g. "
                          '{"text": "a smiling face", "mask": "data/tiny#3", "seed": 0}.')
    return rows, conditions


def plan_rows(rows_url: str, models: str, preset: str, out: str, samples_per_shard: int = 64,
              overwrite: bool = False, cache_dir: Path | None = None) -> tuple[RowsPlan, list[int]]:
    """Validate everything, write dataset.json; return the plan and the shards still to write."""
    rows, conditions = parse_rows(read_bytes(rows_url, "rows file").decode(), rows_url)
    registry, cfg = default_registry_url(models), get_preset(preset)
    modalities = list(dict.fromkeys(r.modality for r in rows))
    versions = registered_versions(cfg, registry, modalities, cache_dir)
    digest = hashlib.sha256("\n".join(r.model_dump_json() for r in rows).encode())
    for array in conditions:
        digest.update(array.tobytes())
    n_shards = -(-len(rows) // samples_per_shard)
    index = DatasetIndex(
        preset=preset, parameters={"kind": "generate", "rows_sha256": digest.hexdigest(), "model_versions": versions},
        weights=weight_digests(cfg, ["farl"], cache_dir) | model_digests(registry, versions, cache_dir),
        software_version=__version__, samples_per_shard=samples_per_shard,
        vector_dims={"w": cfg.generator.w_dim}, num_samples=len(rows),
        shards=[shard_name(i) for i in range(n_shards)])
    plan = RowsPlan(tuple(rows), tuple(conditions), out, samples_per_shard, index)
    prepare_output(out, index, overwrite=overwrite)
    todo = [s for s in range(n_shards) if getattr(read_shard_stats(out, s), "count", None) != len(plan.shard_indices(s))]
    return plan, todo


def load_row_models(plan: RowsPlan, models: str, device: str = "cpu") -> EditModels:
    """The inference models of every modality the rows use."""
    modalities = list(dict.fromkeys(r.modality for r in plan.rows))
    return load_edit_models(plan.index.preset, default_registry_url(models), modalities, device)


@torch.inference_mode()
def generate_shard(plan: RowsPlan, models: EditModels, shard: int) -> ShardStats:
    """Generate and commit one shard of rows; returns its stats."""
    def make_sample(index: int) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
        row = plan.rows[index]
        model = models.by_modality[row.modality]
        w = model.latents([row.text], plan.conditions[index])  # (1, w_dim), alone: batch-invariant
        image = model.synthesize(w, noise_seed=row.seed)[0].numpy()  # (R, R, 3)
        w_row = w[0].cpu().numpy()
        members = {"png": encode_png(image), "w.npy": encode_npy(w_row),
                   "json": encode_json(row.model_dump() | {"index": index})}
        return members, {"w": w_row}

    return write_shard(plan.out, shard, plan.shard_indices(shard), make_sample, plan.index.vector_dims)
