"""Typed, validated parameters of a synth-data run: the one place they are checked.

The CLI builds a SynthDataParams from its options, the flow receives that object, and the tasks
get it from the flow; nothing validates it again (an instance passed on is never re-validated).
A deployment's parameters reach the flow as JSON and are validated here too, by Prefect's own
check of the flow's `params` argument. Every path stops with the same ParameterError message,
naming each bad field (with its CLI option) and the fix, before any model is built or any file
is written.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from mm2latent.errors import ConfigError, ParameterError
from mm2latent.input_checks import check_device, check_psi
from mm2latent.modalities.registry import default_registry
from mm2latent.modalities.spec import ModalityRegistry
from mm2latent.presets import get_preset

# The default registry's selectable modalities (a constant: the registry is rebuilt, not shared).
ALL_MODALITIES: tuple[str, ...] = default_registry().selectable
MAX_SHARDS = 10**6  # shard names carry 6 digits (storage.dataset_index.SHARD_DIGITS)
# `mm2latent synth-data` options whose name is not the field's (the others are --field-name).
CLI_OPTIONS = {"n_samples": "--n", "truncation_psi": "--psi"}


def label(field: str) -> str:
    """How messages name a field: the flow parameter and the CLI option, e.g. `n_samples (--n)`."""
    if field not in SynthDataParams.model_fields:
        return field
    return f"{field} ({CLI_OPTIONS.get(field, '--' + field.replace('_', '-'))})"


class SynthDataParams(BaseModel):
    """Everything that determines a synthetic dataset, plus how to compute it."""

    # Frozen: the object the CLI validated is the object every task reads. An instance passed
    # to the flow is kept as is (pydantic's default, spelt out): validated once, never again.
    model_config = ConfigDict(frozen=True, extra="forbid", revalidate_instances="never")

    preset: str = Field("tiny", description="Preset: tiny (seeded networks, images are NOT faces), "
                        "ffhq (official weights) or ffhq-official.")
    n_samples: int = Field(256, gt=0, description="Samples in the dataset, indices 0 .. n-1; "
                           "sample i depends only on (seed, i, preset, weights).")
    samples_per_shard: int = Field(64, gt=0, description="Samples per .tar shard (the last may "
                                   "be short).")
    seed: int = Field(0, ge=0, description="Dataset seed: z_i depends only on (seed, i).")
    truncation_psi: float = Field(0.7, description="StyleGAN2 truncation: 1 = none; the paper's "
                                  "samples use 0.7.")
    out: str = Field("data/tiny", description="Dataset root: local path, memory://, s3://...")
    batch_size: int = Field(16, gt=0, description="Samples per forward pass (never changes the "
                            "output).")
    device: str = Field("cpu", description="torch device for every network.")
    image_size: int | None = Field(None, description="Stored image side, px (a power of two); "
                                   "None = the preset's.")
    image_format: Literal["png", "jpg"] = Field("png", description="png (lossless) or jpg "
                                                "(quality 95, 4:4:4).")
    modalities: tuple[str, ...] = Field(ALL_MODALITIES, description="Annotations to compute "
                                        "(image and w are always kept).")
    max_workers: int = Field(1, gt=0, le=8, description="Shards processed at once (threads; with "
                             "the dask runner and no address: LocalCluster processes).")

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        try:
            get_preset(value)
        except ConfigError as e:
            raise ConfigError(f"{label('preset')}: {e}") from e
        return value

    @field_validator("modalities")
    @classmethod
    def _known_modalities(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # The registry comes in the validation context (parse_params); the default otherwise.
        registry = (info.context or {}).get("registry") or default_registry()
        choices = ", ".join(registry.selectable)
        if not value:
            raise ConfigError(f"{label('modalities')} is empty. Fix: name one or more of {choices}.")
        if len(set(value)) != len(value):
            raise ConfigError(f"{label('modalities')} lists a name twice: {', '.join(value)}.")
        unknown = [m for m in value if m not in registry.selectable]
        if unknown:
            raise ConfigError(f"{label('modalities')}: unknown {', '.join(map(repr, unknown))}. "
                              f"Fix: choose from {choices}.")
        # A canonical order keeps the dataset fingerprint independent of how the user typed it.
        return tuple(m for m in registry.selectable if m in value)

    @field_validator("truncation_psi")
    @classmethod
    def _sane_psi(cls, value: float) -> float:
        # A NaN would otherwise fail mid-run with a shard half written.
        return check_psi(value, label("truncation_psi"))

    @field_validator("device")
    @classmethod
    def _usable_device(cls, value: str) -> str:
        return check_device(value, label("device"))

    @field_validator("image_size")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and (value < 8 or value & (value - 1)):
            raise ConfigError(f"{label('image_size')} {value} is not a power of two >= 8. "
                              "Fix: pass e.g. 64, 256 or 512, or leave it out for the preset's.")
        return value

    @model_validator(mode="after")
    def _shard_names_suffice(self) -> SynthDataParams:
        if self.n_shards > MAX_SHARDS:
            need = -(-self.n_samples // MAX_SHARDS)
            raise ConfigError(
                f"{label('n_samples')} {self.n_samples} in shards of {self.samples_per_shard} needs "
                f"{self.n_shards} shards; shard names allow {MAX_SHARDS}. Fix: set "
                f"{label('samples_per_shard')} to {need} or more, or lower {label('n_samples')}.")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _one_message(cls, data: Any, handler: Any) -> SynthDataParams:
        # Every caller (CLI, flow call, Prefect's check of a deployment run) gets this one error.
        # Defined last: pydantic nests model validators in order, so this one wraps the others.
        try:
            return handler(data)
        except ValidationError as e:
            problems = "; ".join(_problem(err) for err in e.errors())
            raise ParameterError(f"Invalid synth-data parameters: {problems}") from e

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


def _problem(err: Any) -> str:
    """One pydantic error as text: our validators' messages already name the field and the fix."""
    if err["type"] == "value_error":
        return str(err["ctx"]["error"])
    field = ".".join(str(p) for p in err["loc"]) or "params"
    return f"{label(field)}: {err['msg']}"


def parse_params(registry: ModalityRegistry | None = None, **values: object) -> SynthDataParams:
    """Build SynthDataParams from field values (ParameterError naming each bad field otherwise).

    Args:
        registry: the modalities `modalities` may name; None = default_registry().
        **values: SynthDataParams fields.
    """
    return SynthDataParams.model_validate(values, context={"registry": registry})
