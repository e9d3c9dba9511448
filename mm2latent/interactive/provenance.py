"""Provenance sidecars (typed records, flat JSON for the page) and PNG data URLs for the
interactive editor's results."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from mm2latent_core.errors import ConfigError
from mm2latent.interactive.models import ModelSet
from mm2latent.json_records import JsonRecord, fields_of
from mm2latent.modalities.codecs import encode_png


def _uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W, 3) uint8 of a uint8 image or of a (1, 3, H, W) float photo in [0, 1]."""
    if isinstance(image, torch.Tensor) and image.dtype.is_floating_point:
        image = (image[0] * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0)  # (H, W, 3)
    return np.asarray(image)


def png_data_url(image: np.ndarray | torch.Tensor) -> str:
    """data:image/png;base64,... of an image (lossless: the page shows the exact pixels)."""
    return "data:image/png;base64," + base64.b64encode(encode_png(_uint8(image))).decode()


@dataclass(frozen=True)
class GenerateInputs(JsonRecord):
    """What a generated image was made from."""

    MODE: ClassVar[str] = "generate"
    caption: str
    modality: str  # the condition's modality (its MappingNet)
    condition_sha256: str  # of the condition array
    seed: int | None  # noise seed; None = the generator's constant noise
    truncation_psi: float

    def to_json(self) -> dict[str, Any]:
        """Flat JSON: mode, then the fields."""
        return {"mode": self.MODE, **super().to_json()}


@dataclass(frozen=True)
class TextDirection(JsonRecord):
    """delta = Net(f_target, s) - Net(f_pivot, s), s the photo's own annotation."""

    KIND: ClassVar[str] = "text"
    modality: str
    target: str  # target caption
    pivot: str  # neutral caption


@dataclass(frozen=True)
class SpatialDirection(JsonRecord):
    """delta = Net(f_img, s_target) - Net(f_img, s_pivot), pivot the photo's own annotation."""

    KIND: ClassVar[str] = "spatial"
    modality: str
    target_sha256: str  # of the target condition array


@dataclass(frozen=True)
class EditInputs:
    """What an edited photo was made from."""

    MODE: ClassVar[str] = "edit"
    photo_sha256: str
    beta: float
    direction: TextDirection | SpatialDirection

    @property
    def modality(self) -> str:
        """The MappingNet the direction came from."""
        return self.direction.modality

    def to_json(self) -> dict[str, Any]:
        """Flat JSON: mode, photo_sha256, beta, then the direction's kind and fields."""
        return {"mode": self.MODE, "photo_sha256": self.photo_sha256, "beta": self.beta,
                "kind": self.direction.KIND, **self.direction.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EditInputs:
        """Read the flat JSON of `to_json`."""
        kinds = {k.KIND: k for k in (TextDirection, SpatialDirection)}
        if data.get("kind") not in kinds:
            raise ConfigError(f"edit provenance: kind {data.get('kind')!r} is not one of "
                              f"{', '.join(kinds)}.")
        values = fields_of(["photo_sha256", "beta"], data, "edit provenance")
        return cls(**values, direction=kinds[data["kind"]].from_json(data))


@dataclass(frozen=True)
class Provenance:
    """The sidecar of one result: what made it (preset, weights, models, versions, inputs)."""

    preset: str
    makes_faces: bool  # False: seeded networks, the image is not a face
    weights: dict[str, str]  # component -> weights name, or {"all": "seeded (init_seed N)"}
    models: dict[str, str]  # model name -> registry tag (or released weights name)
    versions: dict[str, str]  # package -> version
    inputs: GenerateInputs | EditInputs
    image_sha256: str  # of the (R, R, 3) uint8 result

    def to_json(self) -> dict[str, Any]:
        """The flat JSON object the page shows (the inputs' keys sit beside the others)."""
        return {"preset": self.preset, "makes_faces": self.makes_faces, "weights": self.weights,
                "models": self.models, "versions": self.versions, **self.inputs.to_json(),
                "image_sha256": self.image_sha256}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Provenance:
        """Read the JSON of `to_json`."""
        modes = {GenerateInputs.MODE: GenerateInputs, EditInputs.MODE: EditInputs}
        if data.get("mode") not in modes:
            raise ConfigError(f"provenance: mode {data.get('mode')!r} is not one of {', '.join(modes)}.")
        names = ["preset", "makes_faces", "weights", "models", "versions", "image_sha256"]
        return cls(**fields_of(names, data, "provenance"),
                   inputs=modes[data["mode"]].from_json(data))


def provenance(models: ModelSet, inputs: GenerateInputs | EditInputs,
               image: np.ndarray) -> Provenance:
    """The sidecar of one result: what made it (models, versions, inputs, seed, beta)."""
    preset = models.preset
    return Provenance(
        preset=preset.name, makes_faces=preset.makes_faces,
        weights=preset.weight_names() or {"all": f"seeded (init_seed {preset.init_seed})"},
        models=models.tags.get(inputs.modality, {}), versions=models.versions, inputs=inputs,
        image_sha256=hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest())
