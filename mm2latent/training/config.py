"""Training configs: one frozen dataclass per trainer, sharing the loop's fields.

Defaults follow the authors' setup where it is known (Adam; mask autoencoder lr 1e-3, sketch
autoencoder lr 1e-2; MappingNet loss MSE + 10 * (1 - cos)). Values the paper does not give
(epochs, batch sizes, MappingNet lr) are our choices and are marked so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from mm2latent_core.errors import ConfigError
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry

SCHEDULES = ("cosine", "step", "none")
RECIPES = ("ours", "official")
DISTANCES = ("mse", "l1")
# TrainCfg fields that do not change what is trained (the registry's specs are code, not settings).
_NOT_RESULT = ("keep_checkpoints", "modality_registry")


@dataclass(frozen=True)
class TrainCfg:
    """Fields of the generic train/validation loop (mm2latent.training.loop.fit)."""

    epochs: int = 100  # passes over the training split (our choice; the paper gives none)
    batch_size: int = 64  # samples per optimizer step; the last, short batch is kept
    lr: float = 1e-3  # Adam learning rate at epoch 0
    schedule: str = "cosine"  # per-epoch lr schedule: "cosine" (to 0), "step", "none" (constant)
    step_epochs: int = 30  # "step" schedule: multiply lr by step_gamma every this many epochs
    step_gamma: float = 0.1  # "step" schedule factor
    weight_decay: float = 0.0  # Adam L2 weight decay; 0 = none
    val_fraction: float = 0.05  # share of samples held out; 0 = no validation split
    split_seed: int = 0  # seed of the hold-out rule hash(split_seed, index) < val_fraction
    patience: int = 0  # early stopping: stop after this many epochs without val improvement; 0 = off
    min_delta: float = 0.0  # a val loss must drop by more than this to count as an improvement
    seed: int = 0  # seed of init, shuffling, dropout and PTEG noise
    device: str = "cpu"  # torch device; bit-exact reproducibility is promised on CPU only
    keep_checkpoints: int = 2  # epoch checkpoints kept besides the best one (the last k)
    # Modalities a trainer may name, and how each becomes a network input; None = default_registry().
    modality_registry: ModalityRegistry | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.keep_checkpoints < 1:
            raise ConfigError(f"keep_checkpoints must be >= 1 (the last one is needed to resume), "
                              f"got {self.keep_checkpoints}.")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={self.schedule!r}; choose one of {', '.join(SCHEDULES)}.")
        for name in ("epochs", "batch_size", "step_epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}.")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must lie in [0, 1), got {self.val_fraction}.")
        if self.patience < 0 or self.weight_decay < 0:
            raise ConfigError("patience and weight_decay must be >= 0 (0 = off).")
        if self.patience > 0 and self.val_fraction == 0:
            raise ConfigError("early stopping (patience > 0) needs a validation split: "
                              "set val_fraction > 0 or patience = 0.")

    def to_dict(self) -> dict:
        """JSON-able dict of every field that shapes the result, with the class name under 'type'.

        Housekeeping fields (_NOT_RESULT) are left out: changing them neither names a new run
        directory nor blocks a resume.
        """
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in _NOT_RESULT}  # every result field is a plain number or str
        return {"type": type(self).__name__, **fields}

    @property
    def modalities(self) -> ModalityRegistry:
        """The registry `modality` is looked up in."""
        return self.modality_registry or default_registry()

    def digest(self) -> str:
        """sha256 of the JSON form: names a run directory for this exact config."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class AutoencoderTrainCfg(TrainCfg):
    """Training of the mask (MSE) or sketch (binary cross-entropy) autoencoder."""

    modality: str = "mask"  # a MapInput modality ("mask", "sketch"); architecture from the preset
    recipe: str = "ours"  # "ours" or "official" (the authors' networks, inputs and schedule)
    augment: bool = False  # the authors' random affine + flip on training batches

    def __post_init__(self) -> None:
        super().__post_init__()
        self.modalities.map_input(self.modality)  # ConfigError listing the map modalities
        if self.recipe not in RECIPES:
            raise ConfigError(f"recipe={self.recipe!r}; choose one of {', '.join(RECIPES)}.")


# A MappingNet's text input: the paper's pseudo text embeddings of the FaRL image embedding,
# the FaRL text embeddings of the dataset's templated captions (`dataset captions`), or a mix of
# the two drawn per sample and epoch.
TEXT_KINDS = ("pteg", "captions", "mixed")
DEFAULT_CAPTION_SHARE = 0.5  # "mixed": half captions, half PTEG unless told otherwise (our choice)


@dataclass(frozen=True)
class TextInput:
    """What a MappingNet reads as its text input, one of TEXT_KINDS."""

    # "pteg": pseudo text embedding of the image's FaRL (the paper); "captions": the caption's
    # FaRL text embedding; "mixed": per sample and epoch the caption's with probability
    # caption_share, else the PTEG one.
    kind: str = "pteg"
    caption_share: float | None = None  # "mixed" only, in [0, 1]; None = DEFAULT_CAPTION_SHARE

    def __post_init__(self) -> None:
        if self.kind not in TEXT_KINDS:
            raise ConfigError(f"--text {self.kind!r}; choose one of {', '.join(TEXT_KINDS)}.")
        if self.caption_share is None:
            return
        if self.kind != "mixed":
            raise ConfigError(f"--caption-share {self.caption_share} only applies to --text mixed "
                              f"(got --text {self.kind}). Fix: drop --caption-share or pass "
                              "--text mixed.")
        if not 0.0 <= self.caption_share <= 1.0:
            raise ConfigError(f"--caption-share must lie in [0, 1], got {self.caption_share}.")

    @property
    def reads_captions(self) -> bool:
        """Whether training reads the dataset's caption text embeddings."""
        return self.kind != "pteg"

    @property
    def share(self) -> float | None:
        """The captions' share of "mixed" training samples; None for the other kinds."""
        if self.kind != "mixed":
            return None
        return DEFAULT_CAPTION_SHARE if self.caption_share is None else self.caption_share


@dataclass(frozen=True)
class MappingTrainCfg(TrainCfg):
    """Training of one MappingNet: [pseudo text ; spatial embedding] -> w."""

    # Condition: a MapInput modality (its AE embedding: "mask", "sketch") or a VectorInput one
    # (the stored vector: "flame").
    modality: str = "mask"
    cosine_weight: float = 10.0  # lambda of loss = dist + lambda * (1 - cos); paper: 10
    distance: str = "mse"  # distance term: "mse" (paper) or "l1"
    pteg: bool = True  # pseudo text embedding y = norm(f + e/|e|); False feeds f itself
    pteg_noise_norm: float = 1.0  # length of the random unit direction added to f

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.modality not in self.modalities.conditions:
            raise ConfigError(f"mapping modality={self.modality!r}; choose one of "
                              f"{', '.join(self.modalities.conditions)}.")
        if self.distance not in DISTANCES:
            raise ConfigError(f"distance={self.distance!r}; choose one of {', '.join(DISTANCES)}.")
        if self.cosine_weight < 0:
            raise ConfigError(f"cosine_weight must be >= 0, got {self.cosine_weight}.")


def autoencoder_train_cfg(modality: str, recipe: str = "ours",
                          modality_registry: ModalityRegistry | None = None,
                          **overrides: object) -> AutoencoderTrainCfg:
    """The authors' optimiser setup for one autoencoder (its MapInput.ae_lr) + overrides.

    Args:
        modality: a map modality of the registry ("mask" or "sketch" by default).
        recipe: "ours" (cosine schedule, no augmentation) or "official" (the authors' recipe:
            constant lr, random affine + flip; the network follows from the recipe too).
        modality_registry: where `modality` is looked up; None = default_registry().
        **overrides: AutoencoderTrainCfg fields to replace; None values are ignored.
    """
    official = recipe == "official"
    lr = (modality_registry or default_registry()).map_input(modality).ae_lr
    base = AutoencoderTrainCfg(modality=modality, lr=lr, recipe=recipe, augment=official,
                               schedule="none" if official else "cosine",
                               modality_registry=modality_registry)
    return replace_cfg(base, overrides)


def replace_cfg(cfg: TrainCfg, overrides: dict) -> TrainCfg:
    """dataclasses.replace skipping None values; unknown fields raise ConfigError listing the valid ones."""
    valid = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"Unknown training option(s) {unknown} for {type(cfg).__name__}; "
                          f"valid: {', '.join(sorted(valid))}.")
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
