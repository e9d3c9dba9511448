"""The AttributeSource record, the batch a source sees, and the registry of sources."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mm2latent_core.errors import ConfigError
from mm2latent_core.modalities.spec import PresetLike


@dataclass(frozen=True)
class AttributeColumn:
    """One attribute a source computes (stored as column `<source>.<name>`, float32)."""

    name: str         # attribute name, e.g. "eyeglasses"
    unit: str         # e.g. "share of image pixels", "degrees", "probability"
    description: str  # what the number measures and how


@dataclass(frozen=True)
class AttributeBatch:
    """The samples a source sees at once: ok samples of one shard, in index order."""

    index: np.ndarray             # (B,) int64 dataset sample indices
    values: Mapping[str, Any]     # manifest vectors (B, D) float32 and decoded members, by name


@dataclass(frozen=True)
class Prepared:
    """What a source needs once per run (e.g. prompt embeddings) and what it depends on."""

    context: Any                  # passed to `compute` with every batch; must pickle
    producer: dict[str, Any]      # JSON values hashed into the folder digest (weights, prompts...)


@dataclass(frozen=True)
class PrepareInputs:
    """What `prepare` may use: the resolved preset, the weights cache and the dataset's record."""

    preset: PresetLike            # mm2latent.presets.PresetCfg
    cache_dir: Path | None        # weights cache; None = the default
    dataset_preset: str           # the preset that generated the dataset (dataset.json)
    dataset_weights: Mapping[str, str]  # weights name -> sha256 the dataset was generated with


@dataclass(frozen=True)
class AttributeSource:
    """How one family of attributes is computed from a dataset's samples.

    Args:
        name: source name; column prefix and first part of the folder name.
        version: bump whenever the values for the same inputs change (it enters the digest).
        description: one sentence for the descriptor and `--help`.
        columns: the attributes, in column order.
        compute: (context, batch) -> attribute name -> (B,) values, for every column.
        vectors: manifest vector columns it reads (e.g. "flame"); read from parquet only.
        members: modalities it decodes from the tars (e.g. "mask").
        prepare: PrepareInputs -> Prepared, once per run; None = no context, empty producer.

    Every callable is a module-level function (never a lambda or closure): registries and the
    run's plan are pickled to Prefect task workers.
    """

    name: str
    version: str
    description: str
    columns: tuple[AttributeColumn, ...]
    compute: Callable[[Any, AttributeBatch], Mapping[str, np.ndarray]]
    vectors: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    prepare: Callable[[PrepareInputs], Prepared] | None = None

    def column_name(self, attribute: str) -> str:
        """The stored column of `attribute`: `<source>.<attribute>`."""
        return f"{self.name}.{attribute}"

    def digest(self, producer: Mapping[str, Any]) -> str:
        """sha256 of everything the values depend on: name, version, columns and `producer`."""
        record = {"source": self.name, "version": self.version,
                  "columns": [c.name for c in self.columns], "producer": producer}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class AttributeRegistry:
    """An ordered set of AttributeSources, passed explicitly (never filled at import time)."""

    sources: tuple[AttributeSource, ...]
    _by_name: dict[str, AttributeSource] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, AttributeSource] = {}
        for source in self.sources:
            if source.name in by_name or "." in source.name or "-" in source.name:
                raise ConfigError(f"attribute source {source.name!r} is registered twice or has a "
                                  "'.' or '-' in its name; give it another name.")
            by_name[source.name] = source
        object.__setattr__(self, "_by_name", by_name)

    def with_source(self, source: AttributeSource) -> AttributeRegistry:
        """A new registry with `source` appended."""
        return AttributeRegistry((*self.sources, source))

    def __iter__(self) -> Iterator[AttributeSource]:
        return iter(self.sources)

    @property
    def names(self) -> tuple[str, ...]:
        """Every source name, in registry order."""
        return tuple(self._by_name)

    def get(self, name: str) -> AttributeSource:
        """The source called `name`; ConfigError listing the known names otherwise."""
        if name not in self._by_name:
            raise ConfigError(f"unknown attribute source {name!r}; known: {', '.join(self.names)}. "
                              "Fix: pick some of those with --sources.")
        return self._by_name[name]
