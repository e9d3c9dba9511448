"""The ModalitySpec record, the batch an annotator sees, and the registry type."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mm2latent_core.errors import ConfigError
from mm2latent_core.modalities.network_input import MapInput, VectorInput

# A preset (mm2latent.presets.PresetCfg): the bottom layer cannot import the library, so the
# spec types it loosely; each modality's own functions take the concrete class.
PresetLike = Any

METADATA_EXT = "json"  # per-sample metadata member; written for every sample, not a modality


@dataclass(frozen=True)
class SynthBatch:
    """What an annotator sees: one batch of generated samples, on the run's device."""

    w: torch.Tensor         # (B, w_dim) float
    pixels: torch.Tensor    # (B, S, S, 3) uint8 RGB, the stored image
    images01: torch.Tensor  # (B, 3, S, S) float in [0, 1], the stored image as annotators take it


@dataclass(frozen=True)
class Annotation:
    """An annotator's output for a batch: one row per sample, and per-sample failures."""

    values: np.ndarray                              # (B, ...) row j belongs to sample j
    errors: Sequence[str | None] | None = None      # None = every sample ok; else per sample


class ModalityStats(Protocol):
    """Running statistics of one modality over decoded samples, for `dataset inspect`."""

    def add(self, value: Any) -> None:
        """Fold in one decoded value (as storage.readers returns it)."""

    def result(self) -> Any:
        """Plain JSON-able result; None when nothing was added."""

    def render(self, result: Any) -> str | None:
        """One report line for `result`, or None to print nothing."""


@dataclass(frozen=True)
class ConditionHelp:
    """How the CLI's help names a condition of this modality (`generate --<name>`, `edit`).

    Args:
        file: what a condition file holds, e.g. "Label-id PNG (CelebAMask-HQ ids 0..18)".
        noun: the condition in a sentence, e.g. "mask", "3DMM code".
        annotator: what the photo's own condition replaces, e.g. "DECA's", "its edges".
    """

    file: str
    noun: str
    annotator: str


@dataclass(frozen=True)
class ModalitySpec:
    """Everything the pipeline needs to know about one modality.

    Args:
        name: member name: manifest columns `<name>_bytes/_sha256`, key of a decoded sample.
        exts: tar member extensions a sample may carry for it (first one that is present wins).
        encode: (row value, image_format) -> (tar extension, payload bytes).
        decode: payload bytes -> decoded value (tensor) as storage.readers returns it.
        annotate: (annotator, batch) -> Annotation; how synth-data computes it.
        selectable: True = chosen by `--modalities`; False = always stored (image, w).
        build: (preset, weights cache dir) -> annotator; None = annotate needs none.
        component: weights component of the annotator (PresetCfg.weight_names key); None = none.
        vector_dim: preset -> width of its parquet vector column; None = no column.
        annotator_width: annotator -> width it outputs, checked against vector_dim(preset).
        stats: factory of a ModalityStats for `dataset inspect`; None = no decoded statistics.
        tile: decoded value -> (H, W, 3) uint8 picture for the contact sheet; None = no tile.
        network_input: how training and inference feed it to a network: MapInput (an
            autoencoder's input, the MappingNet takes the embedding) or VectorInput (the
            MappingNet takes the vector); None = it conditions no network.
        help: how the CLI's help describes its condition options; None = by its name.

    Every callable is a module-level function, class or frozen dataclass, never a lambda or
    closure: registries are pickled to DataLoader workers started with `spawn`.
    """

    name: str
    exts: tuple[str, ...]
    encode: Callable[[np.ndarray, str], tuple[str, bytes]]
    decode: Callable[[bytes], Any]
    annotate: Callable[[Any, SynthBatch], Annotation]
    selectable: bool = True
    build: Callable[[PresetLike, Path | None], Any] | None = None
    component: str | None = None
    vector_dim: Callable[[PresetLike], int] | None = None
    annotator_width: Callable[[Any], int] | None = None
    stats: Callable[[], ModalityStats] | None = None
    tile: Callable[[Any], np.ndarray] | None = None
    network_input: MapInput | VectorInput | None = None
    help: ConditionHelp | None = None

    @property
    def condition_help(self) -> ConditionHelp:
        """`help`, or a plain one built from the name and file extension."""
        return self.help or ConditionHelp(file=f"{self.exts[0]} file of a {self.name}",
                                          noun=self.name, annotator="annotating it")


@dataclass(frozen=True)
class ModalityRegistry:
    """An ordered set of ModalitySpecs; order fixes manifest columns and tar member order."""

    specs: tuple[ModalitySpec, ...]
    _by_name: dict[str, ModalitySpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, ModalitySpec] = {}
        for spec in self.specs:
            if spec.name in by_name or spec.name == METADATA_EXT:
                raise ConfigError(f"modality {spec.name!r} is registered twice or clashes with the "
                                  "metadata member; give it another name.")
            by_name[spec.name] = spec
        object.__setattr__(self, "_by_name", by_name)

    def with_spec(self, spec: ModalitySpec) -> ModalityRegistry:
        """A new registry with `spec` appended (the registry itself is never changed)."""
        return ModalityRegistry((*self.specs, spec))

    def __iter__(self) -> Iterator[ModalitySpec]:
        return iter(self.specs)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        """Every modality name, in registry order."""
        return tuple(self._by_name)

    @property
    def selectable(self) -> tuple[str, ...]:
        """Names a run may choose with `modalities`, in registry order."""
        return tuple(s.name for s in self.specs if s.selectable)

    @property
    def conditions(self) -> tuple[str, ...]:
        """Names a MappingNet can be conditioned on (maps and vectors), in registry order."""
        return tuple(s.name for s in self.specs if s.network_input is not None)

    @property
    def maps(self) -> tuple[str, ...]:
        """Names with an autoencoder (MapInput), in registry order."""
        return tuple(s.name for s in self.specs if isinstance(s.network_input, MapInput))

    def condition(self, name: str) -> MapInput | VectorInput:
        """How `name` enters a network; ConfigError listing the condition names otherwise."""
        spec = self._by_name.get(name)
        if spec is None or spec.network_input is None:
            raise ConfigError(f"modality={name!r} cannot condition a MappingNet; choose one of "
                              f"{', '.join(self.conditions)}.")
        return spec.network_input

    def map_input(self, name: str) -> MapInput:
        """The MapInput of `name`; ConfigError listing the autoencoder modalities otherwise."""
        spec = self._by_name.get(name)
        if spec is None or not isinstance(spec.network_input, MapInput):
            raise ConfigError(f"autoencoder modality={name!r}; choose one of {', '.join(self.maps)}.")
        return spec.network_input

    def get(self, name: str) -> ModalitySpec:
        """The spec called `name`; ConfigError listing the known names otherwise."""
        if name not in self._by_name:
            raise ConfigError(f"unknown modality {name!r}; known: {', '.join(self.names)}. "
                              "Fix: pick one of those, or add a spec to the registry.")
        return self._by_name[name]

    def stored(self, selected: Iterable[str]) -> tuple[ModalitySpec, ...]:
        """Specs a run selecting `selected` stores: the always-stored ones plus the selection."""
        chosen = set(selected)
        return tuple(s for s in self.specs if not s.selectable or s.name in chosen)

    def vector_dims(self, preset: PresetLike, selected: Iterable[str]) -> dict[str, int]:
        """name -> parquet vector width of every stored modality that has a vector column."""
        return {s.name: s.vector_dim(preset) for s in self.stored(selected) if s.vector_dim is not None}

    def member_exts(self) -> dict[str, tuple[str, ...]]:
        """name -> tar extensions, every modality plus the metadata member (manifest columns)."""
        return {**{s.name: s.exts for s in self.specs}, METADATA_EXT: (METADATA_EXT,)}
