"""The edit spec (YAML): named edits, each text (pivot, target, betas) or spatial (modality,
target file or dataset sample, betas). Parsed and resolved before anything is written.

    edits:
      smile:   {kind: text, target: a smiling face, pivot: a face, betas: [0.5, 1], modality: mask}
      sample3: {kind: spatial, modality: mask, target: data/tiny#3}          # beta 1, the paper's
      sketchy: {kind: spatial, modality: sketch, target: sketch.png, betas: [1, 2]}

`condition` (optional, both kinds): the photo's own condition to use instead of annotating it
(the spatial condition of a text edit, the pivot of a spatial edit); a file or DATASET#INDEX.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mm2latent.conditions import load_condition
from mm2latent.editing import SPATIAL_DEFAULT_BETA
from mm2latent_core.errors import ConfigError, Mm2LatentError
from mm2latent.modalities.registry import default_registry

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"  # edit names become tar member names: no dots or slashes


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    modality: str = "mask"  # the MappingNet's spatial input: a condition of default_registry()
    condition: str | None = None  # the photo's own condition (file or DATASET#INDEX); None = annotate
    betas: tuple[float, ...] = (SPATIAL_DEFAULT_BETA,)  # strengths; one output image per beta

    @field_validator("modality")
    @classmethod
    def _condition(cls, value: str) -> str:
        conditions = default_registry().conditions  # with any MM2LATENT_MODALITIES plugin
        if value not in conditions:
            raise ValueError(f"{value!r} is not a condition modality; choose one of {', '.join(conditions)}")
        return value

    @field_validator("betas", mode="before")
    @classmethod
    def _finite(cls, value: object) -> object:
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise ValueError("give at least one beta, e.g. [1.0]")
        for i, beta in enumerate(values):
            if isinstance(beta, (int, float)) and not math.isfinite(beta):
                raise ValueError(f"beta[{i}] is {beta}; every beta must be a finite number")
        return values


class TextEdit(_Edit):
    """w+ + beta * (Net(f_target_text, s) - Net(f_pivot_text, s))."""

    kind: Literal["text"]
    target: str = Field(min_length=1)  # description of the result
    pivot: str = Field("a face", min_length=1)  # neutral description


class SpatialEdit(_Edit):
    """w+ + beta * (Net(f_img, s_target) - Net(f_img, s_pivot))."""

    kind: Literal["spatial"]
    target: str = Field(min_length=1)  # target condition: a file, or DATASET#INDEX


@dataclass(frozen=True)
class ResolvedEdit:
    """One edit with its conditions loaded."""

    name: str
    edit: TextEdit | SpatialEdit
    target: np.ndarray | None  # the spatial target's raw condition; None for text edits
    condition: np.ndarray | None  # the photos' own condition when given


@dataclass(frozen=True)
class EditSpec:
    """A parsed, resolved spec and its hash (over the spec and the loaded condition arrays)."""

    edits: tuple[ResolvedEdit, ...]
    sha256: str

    def modalities(self) -> list[str]:
        """The MappingNets the spec needs, in first-use order."""
        return list(dict.fromkeys(e.edit.modality for e in self.edits))

    def to_json(self) -> dict[str, Any]:
        """The spec as dataset.json's `spec` holds it: {edit name: its fields}, the spec file's
        `edits:` mapping with every default filled in."""
        return {e.name: e.edit.model_dump(mode="json") for e in self.edits}

    @classmethod
    def from_json(cls, edits: object, url: str = "spec") -> EditSpec:
        """Parse and resolve the `edits:` mapping (of a spec file or a dataset.json); loads the
        conditions it names. ConfigError naming the edit and field of any problem."""
        if not isinstance(edits, dict) or not edits:
            raise ConfigError(f"{url}: expected a mapping 'edits:' of named edits, e.g. "
                              "edits: {smile: {kind: text, target: a smiling face}}.")
        resolved = []
        digest = hashlib.sha256()
        for name, body in edits.items():
            edit = _parse_edit(url, name, body)
            target = None
            if isinstance(edit, SpatialEdit):
                target = _load(url, name, "target", edit.modality, edit.target)
            condition = _load(url, name, "condition", edit.modality, edit.condition)
            resolved.append(ResolvedEdit(name, edit, target, condition))
            for array in (target, condition):
                digest.update(b"-" if array is None else array.tobytes() + str(array.shape).encode())
        spec = cls(tuple(resolved), "")
        digest.update(json.dumps(spec.to_json(), sort_keys=True).encode())
        return cls(spec.edits, digest.hexdigest())


def _parse_edit(url: str, name: object, body: object) -> TextEdit | SpatialEdit:
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise ConfigError(f"{url}: edit name {name!r} must be letters, digits, '_' or '-'.")
    kind = body.get("kind") if isinstance(body, dict) else None
    cls = {"text": TextEdit, "spatial": SpatialEdit}.get(kind)
    if cls is None:
        raise ConfigError(f"{url}: edit {name!r}: field 'kind' is {kind!r}; choose text or spatial.")
    try:
        return cls.model_validate(body)
    except ValidationError as e:
        problems = "; ".join(f"field {'.'.join(str(p) for p in err['loc'])!r}: {err['msg']}"
                             for err in e.errors())
        raise ConfigError(f"{url}: edit {name!r}: {problems}.") from e


def _load(url: str, name: str, field: str, modality: str, ref: str | None) -> np.ndarray | None:
    if ref is None:
        return None
    try:
        return load_condition(modality, ref)
    except Mm2LatentError as e:
        raise ConfigError(f"{url}: edit {name!r}: field {field!r}: {e}") from e


def parse_spec(text: str, url: str = "spec") -> EditSpec:
    """Parse and resolve a YAML spec; ConfigError naming the edit and field of any problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{url}: not valid YAML ({e}).") from e
    return EditSpec.from_json(document.get("edits") if isinstance(document, dict) else None, url)
