"""The options a user sets for a training run, declared once: type, default and help text.

The CLI (`mm2latent train ...`) builds its flags from these models and the training flows take
them as their parameters (flows/parameters.py spreads the fields into the flow's signature, so
deployments and prefect.yaml still see one flat, documented parameter per option). Options left
at None take the training config's default (mm2latent.training.config).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mm2latent_core.errors import ConfigError
from mm2latent.input_checks import parse_list
from mm2latent.modalities.registry import default_registry
from mm2latent.training.config import (DEFAULT_CAPTION_SHARE, AutoencoderTrainCfg,
                                       MappingTrainCfg, TextInput, TrainCfg,
                                       autoencoder_train_cfg, replace_cfg)
from mm2latent.training.registry import default_registry_url

M = TypeVar("M", bound=BaseModel)
_FROZEN = ConfigDict(frozen=True, extra="forbid")


def parse_options(model: type[M], values: dict) -> M:
    """`model(**values)`, with a validation failure turned into a ConfigError naming the option."""
    try:
        return model(**values)
    except ValidationError as e:
        problems = "; ".join(_problem(err, model.__name__) for err in e.errors())
        raise ConfigError(f"bad training option(s): {problems}. Fix: see `--help` for the valid "
                          "values.") from e


def _problem(err: dict, model_name: str) -> str:
    """One validation failure: our own ConfigError's message as written (it names the option and
    the fix), else pydantic's with the option's name in front."""
    if isinstance(err.get("ctx", {}).get("error"), ConfigError):
        return str(err["ctx"]["error"]).rstrip(".")
    return f"{'.'.join(map(str, err['loc'])) or model_name}: {err['msg']}"


def _modality_list(value: object, valid: tuple[str, ...], name: str,
                   allow_empty: bool = False) -> list[str]:
    """A comma string (the CLI's form) or a list (a flow's) of modalities, checked."""
    text = value if isinstance(value, str) else ",".join(map(str, value))
    if allow_empty and not text.strip():
        return []
    return parse_list(text, valid, name)


class DeviceAndBatch(BaseModel):
    """The two settings every training entry point passes on to each model it trains."""

    model_config = _FROZEN

    batch_size: int | None = Field(None, description=f"Batch size (default {TrainCfg.batch_size}).")
    device: str | None = Field(None, description="torch device (default cpu).")


class TrainOverrides(DeviceAndBatch):
    """Loop settings of one model (TrainCfg fields); None = the config's default."""

    epochs: int | None = Field(None, description=f"Epochs (default {TrainCfg.epochs}).")
    lr: float | None = Field(None, description="Adam learning rate (default per model).")
    schedule: str | None = Field(None, description="lr schedule: cosine, step or none.")
    weight_decay: float | None = Field(None, description="Adam weight decay (0 = none).")
    val_fraction: float | None = Field(None, description="Held-out share of samples, by index.")
    patience: int | None = Field(None, description="Early stopping patience in epochs (0 = off).")
    seed: int | None = Field(None, description="Seed of init, shuffling and noise.")
    keep_checkpoints: int | None = Field(
        None, description=f"Epoch checkpoints kept besides the best (default {TrainCfg.keep_checkpoints}).")

    def cfg_overrides(self) -> dict[str, object]:
        """The TrainCfg fields set here (None values are skipped by replace_cfg)."""
        return {name: getattr(self, name) for name in TrainOverrides.model_fields}


class RunTarget(BaseModel):
    """Where a training run reads and writes, and which architecture preset it builds."""

    model_config = _FROZEN

    dataset: str = Field(description="Dataset root (synth-data output): path, memory://, s3://.")
    out: str = Field("runs", description="Root of the run directories (checkpoints, curves.png).")
    registry: str | None = Field(None, description="Model registry directory (default <out>/registry).")
    preset: str = Field("tiny", description="Architecture preset: tiny or ffhq.")

    @property
    def registry_url(self) -> str:
        """The registry directory, `<out>/registry` unless one was given."""
        return self.registry or default_registry_url(self.out)


class TrainRunOptions(TrainOverrides, RunTarget):
    """A run that trains models of one kind."""

    resume: bool = Field(False, description="Continue the interrupted run of the same data and "
                         "settings; refused when there is nothing to resume.")
    resume_or_start: bool = Field(False, description="Continue the interrupted run if there is "
                                  "one, else start it (what the pipeline and retrain flows do).")

    @property
    def continues_runs(self) -> bool:
        """Whether training continues a run directory's checkpoints (else they are an error)."""
        return self.resume or self.resume_or_start

    @property
    def must_resume(self) -> bool:
        """--resume alone: the command refuses when none of its runs has anything to resume."""
        return self.resume and not self.resume_or_start


class AutoencoderOptions(TrainRunOptions):
    """`mm2latent train autoencoders` and the train-autoencoders flow."""

    modalities: list[str] = Field(["mask", "sketch"], description="Comma list of mask,sketch.")
    real_masks: str | None = Field(
        None, description="Directory of real label-id mask PNGs to train on as well.")
    real_sketches: str | None = Field(
        None, description="Directory of real sketch PNGs (white strokes on black) to train on as well.")
    recipe: str = Field("ours", description="ours (default) or official: the authors' networks, grey "
                        "facer-order mask input, strokes at 1.02, constant lr, random affine + flip.")

    @field_validator("modalities", mode="before")
    @classmethod
    def _known(cls, value: object) -> list[str]:
        return _modality_list(value, default_registry().maps, "--modalities")

    def train_cfgs(self) -> list[AutoencoderTrainCfg]:
        """One validated training config per chosen modality."""
        return [autoencoder_train_cfg(m, self.recipe, **self.cfg_overrides()) for m in self.modalities]

    def real_dir(self, modality: str) -> str | None:
        """The directory of real PNGs for `modality`, if one was given."""
        return {"mask": self.real_masks, "sketch": self.real_sketches}.get(modality)


class MappingOptions(TrainRunOptions):
    """`mm2latent train mapping` and the train-mapping flow."""

    modality: str = Field("mask", description="Spatial input: mask, sketch or flame.")
    embeddings: str | None = Field(
        None, description="Embeddings version, e.g. mask-ae-v2 (default: latest registered autoencoder).")
    cosine_weight: float | None = Field(None, description="lambda of the cosine term (default 10).")
    pteg: bool = Field(True, description="Pseudo text embedding generation (--no-pteg: ablation).")
    text: str = Field("pteg", description="Text input: pteg (the paper's pseudo text embeddings of "
                      "the image), captions (FaRL text embeddings of `dataset captions`) or mixed "
                      "(per sample and epoch, the caption's with probability --caption-share, "
                      "else pteg).")
    caption_share: float | None = Field(
        None, description=f"--text mixed only: each sample's chance per epoch of reading its "
        f"caption, in [0, 1] (default {DEFAULT_CAPTION_SHARE}).")
    batchnorm: bool | None = Field(None, description="Input BatchNorm (default: preset).")
    dropout: float | None = Field(None, description="Input dropout, 0 = none (default: preset).")
    depth: int | None = Field(None, description="Linear layers (default: preset).")

    def train_cfg(self) -> MappingTrainCfg:
        """The validated training config of this MappingNet."""
        overrides = {**self.cfg_overrides(), "cosine_weight": self.cosine_weight}
        return replace_cfg(MappingTrainCfg(modality=self.modality, pteg=self.pteg), overrides)

    @model_validator(mode="after")
    def _known_text_input(self) -> MappingOptions:
        # An unknown --text, --caption-share outside [0, 1] or without --text mixed: ConfigError.
        self.text_input()
        return self

    def text_input(self) -> TextInput:
        """The MappingNet's text input: --text and, for mixed, --caption-share."""
        return TextInput(self.text, self.caption_share)

    def switches(self) -> dict[str, object]:
        """Architecture ablations for mapping_net_cfg; None = the preset's."""
        return {"use_batchnorm": self.batchnorm, "dropout": self.dropout, "depth": self.depth}


class TrainChainOptions(DeviceAndBatch, RunTarget):
    """Autoencoders, then MappingNets on their embeddings: the retrain flow's parameters and
    the training steps of the pipeline flow."""

    autoencoders: list[str] = Field(["mask", "sketch"],
                                    description="Autoencoders to keep current (mask, sketch).")
    mappings: list[str] = Field(["mask", "sketch", "flame"],
                                description="MappingNets to keep current (mask, sketch, flame).")
    ae_epochs: int | None = Field(None, description="Autoencoder epochs; None = default.")
    mapping_epochs: int | None = Field(None, description="MappingNet epochs; None = default.")

    @field_validator("autoencoders", mode="before")
    @classmethod
    def _known_autoencoders(cls, value: object) -> list[str]:
        return _modality_list(value, default_registry().maps, "autoencoders", allow_empty=True)

    @field_validator("mappings", mode="before")
    @classmethod
    def _known_mappings(cls, value: object) -> list[str]:
        return _modality_list(value, default_registry().conditions, "mappings", allow_empty=True)

    def _shared(self, epochs: int | None) -> dict[str, object]:
        # A chain interrupted by a crash continues its runs instead of failing; new runs start.
        shared = {"dataset": self.dataset, "out": self.out, "registry": self.registry_url,
                  "preset": self.preset, "resume_or_start": True, "epochs": epochs,
                  "batch_size": self.batch_size, "device": self.device}
        return {k: v for k, v in shared.items() if v is not None}

    def autoencoder_options(self) -> AutoencoderOptions:
        """The train-autoencoders run of the chain (every autoencoder in `autoencoders`)."""
        return AutoencoderOptions(**self._shared(self.ae_epochs), modalities=self.autoencoders)

    def mapping_options(self, modality: str) -> MappingOptions:
        """The train-mapping run of the chain for `modality`."""
        return MappingOptions(**self._shared(self.mapping_epochs), modality=modality)
