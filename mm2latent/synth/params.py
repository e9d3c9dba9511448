"""Typed, validated parameters of a synth-data run.

Validation happens here, before any model is built or any file is written, so that a bad
value fails fast with a message naming the field and the fix.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from mm2latent_core.errors import ConfigError
from mm2latent.input_checks import check_device, check_psi
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry

# The default registry's selectable modalities (a constant: the registry is rebuilt, not shared).
ALL_MODALITIES: tuple[str, ...] = default_registry().selectable


class SynthDataParams(BaseModel):
    """Everything that determines a synthetic dataset, plus how to compute it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preset: str = "tiny"                     # key of mm2latent.presets.PRESETS
    n_samples: int = Field(256, gt=0)        # samples in the dataset, indices 0 .. n-1
    samples_per_shard: int = Field(64, gt=0)  # samples per .tar shard (last one may be short)
    seed: int = Field(0, ge=0)               # dataset seed: z_i depends only on (seed, i)
    truncation_psi: float = 0.7              # 1.0 = no truncation; paper samples use 0.7
    out: str = "data/tiny"                   # fsspec URL of the dataset root
    batch_size: int = Field(16, gt=0)        # samples per forward pass (never changes results)
    device: str = "cpu"                      # torch device for every network
    image_size: int | None = None            # stored image side, px; None = the preset's store_size
    image_format: Literal["png", "jpg"] = "png"  # png is lossless; jpg is 95-quality, 4:4:4
    modalities: tuple[str, ...] = ALL_MODALITIES  # annotations to compute (image and w always kept)
    max_workers: int = Field(1, gt=0, le=8)  # shards processed concurrently (threads) in one process

    @field_validator("modalities")
    @classmethod
    def _known_modalities(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # The registry comes in the validation context (parse_params); the default otherwise.
        registry = (info.context or {}).get("registry") or default_registry()
        if len(set(value)) != len(value):
            raise ValueError(f"modalities listed twice: {value}")
        unknown = [m for m in value if m not in registry.selectable]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; choose from {', '.join(registry.selectable)}")
        # A canonical order keeps the dataset fingerprint independent of how the user typed it.
        return tuple(m for m in registry.selectable if m in value)

    @field_validator("truncation_psi")
    @classmethod
    def _sane_psi(cls, value: float) -> float:
        # Checked here too, not only in the CLI: deployments call the flow directly, and a NaN
        # would otherwise fail mid-run with a shard half written.
        return check_psi(value, "truncation_psi")

    @field_validator("device")
    @classmethod
    def _usable_device(cls, value: str) -> str:
        return check_device(value, "device")

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and (value < 8 or value & (value - 1)):
            raise ValueError(f"image_size must be a power of two >= 8, got {value}")
        return value

    @property
    def n_shards(self) -> int:
        """Number of shards the dataset is split into."""
        return -(-self.n_samples // self.samples_per_shard)

    def shard_indices(self, shard: int) -> range:
        """Sample indices stored in shard `shard`."""
        start = shard * self.samples_per_shard
        return range(start, min(start + self.samples_per_shard, self.n_samples))

    def fingerprint(self) -> dict[str, object]:
        """The fields that define each sample's content (not how many, nor how fast).

        n_samples is left out so a rerun may extend a dataset; the shard size and the resolved
        stored image size are recorded separately in dataset.json (so `--image-size` equal to
        the preset's default is the same dataset as leaving it out).
        """
        return self.model_dump(
            mode="json", include={"preset", "seed", "truncation_psi", "image_format", "modalities"})


def parse_params(registry: ModalityRegistry | None = None, **values: object) -> SynthDataParams:
    """Build SynthDataParams, turning pydantic's error into a ConfigError naming each field.

    Args:
        registry: the modalities `modalities` may name; None = default_registry().
        **values: SynthDataParams fields.
    """
    try:
        return SynthDataParams.model_validate(values, context={"registry": registry})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"Invalid synth-data parameters: {problems}.") from e
