"""MappingNet: [text embedding ; spatial embedding] -> StyleGAN w, plus the pseudo text embedding
generator used in training and the latent editing helpers used at inference.

Architecture, following the authors' published `BiPathMappingNet` (Open-Debin/MM2Latent,
`models/text_seg2latent/models_arch.py`): the concatenated input passes through ONE BatchNorm1d
and ONE Dropout (p = 0.5, torch's default) on the input vector, then `depth` = 12 fully connected
layers of width 512 with equalised learning rate (weights N(0, 1) scaled by 1/sqrt(fan_in) at
run time, biases 0), each followed by LeakyReLU(0.2) - including the last one. The final
activation is kept because StyleGAN2's own mapping network also ends on a leaky ReLU, so w is
not restricted by it. Layer order in `net` (default switches) is

    net.0 BatchNorm1d, net.1 Dropout, net.2 Linear, net.3 LeakyReLU, ..., net.24 Linear, net.25

which is the authors' `map_fn.net.*` layout, so their Lightning checkpoints load by name (see
`load_official_mapping_net`). Ablation switches remove modules, shifting later indices:
`use_batchnorm=False` drops net.0, `dropout=0` drops the Dropout, `final_activation=False`
drops the last LeakyReLU; `depth` counts Linear modules only (1 input layer, depth - 2 hidden,
1 output layer; depth = 1 is a single Linear from input to output).

Pseudo text embedding (training only): images have no captions, so the MappingNet is trained on
the image's own FaRL embedding f; adding a random unit vector and renormalising gives
y = (f + e/|e|) / |f + e/|e||, which for a 512-d space is nearly orthogonal noise of the same
length, so cos(y, f) ~ 1/sqrt(2): y is about as far from f as a matching text embedding is.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mm2latent.checkpoint_io import load_state_checked
from mm2latent.models.lightning_checkpoint import read_lightning_checkpoint
from mm2latent.dims import LATENT_DIM
from mm2latent.errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__)

OUTPUTS = ("w", "wplus")


@dataclass(frozen=True)
class MappingNetCfg:
    """Architecture of the MappingNet."""

    text_dim: int = LATENT_DIM  # width of the text / image embedding (FaRL ViT-B/16: 512)
    spatial_dim: int = LATENT_DIM  # spatial embedding width: 512 mask/sketch AE, 159 3DMM; 0 = none
    hidden_dim: int = 512  # width of every hidden fully connected layer (authors: 512)
    depth: int = 12  # number of Linear layers in total (authors: 1 + 11 = 12); >= 1
    use_batchnorm: bool = True  # one BatchNorm1d on the concatenated input (authors: True)
    dropout: float = 0.5  # Dropout probability on the input after BN; 0 = no Dropout module
    lrelu_slope: float = 0.2  # LeakyReLU negative slope after each Linear
    final_activation: bool = True  # LeakyReLU after the last Linear too (authors: True)
    equalized_lr: bool = True  # weights N(0,1) scaled by 1/sqrt(fan_in) at run time (authors)
    output: str = "w"  # "w": (B, w_dim); "wplus": (B, num_ws, w_dim)
    w_dim: int = LATENT_DIM  # StyleGAN2 w width
    num_ws: int = 18  # rows of w+ (18 for a 1024 px generator); used only when output="wplus"

    def __post_init__(self) -> None:
        for name in ("text_dim", "hidden_dim", "depth", "w_dim", "num_ws"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"MappingNetCfg.{name} must be a positive int, got {value!r}.")
        if self.spatial_dim < 0:
            raise ConfigError(f"MappingNetCfg.spatial_dim must be >= 0, got {self.spatial_dim}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"MappingNetCfg.dropout must lie in [0, 1), got {self.dropout}.")
        if self.output not in OUTPUTS:
            raise ConfigError(f"MappingNetCfg.output={self.output!r}; choose one of {OUTPUTS}.")

    @property
    def in_dim(self) -> int:
        """Width of the concatenated input [text ; spatial]."""
        return self.text_dim + self.spatial_dim

    @property
    def out_dim(self) -> int:
        """Width of the last Linear layer (w_dim, or num_ws * w_dim for w+)."""
        return self.w_dim * (self.num_ws if self.output == "wplus" else 1)


class EqualizedLinear(nn.Linear):
    """Linear layer whose weight is multiplied by `weight_gain` at run time.

    With weight_gain = 1/sqrt(fan_in) and weights drawn from N(0, 1), Adam's step size acts on
    every layer at the same relative scale (ProGAN's equalised learning rate).
    """

    def __init__(self, in_features: int, out_features: int, equalized: bool = True) -> None:
        super().__init__(in_features, out_features)
        self.weight_gain = 1.0 / math.sqrt(in_features) if equalized else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_features) -> (B, out_features)."""
        return nn.functional.linear(x, self.weight * self.weight_gain, self.bias)


class MappingNet(nn.Module):
    """MLP from [text embedding ; spatial embedding] to a StyleGAN2 w or w+ (see module doc)."""

    def __init__(self, cfg: MappingNetCfg) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        if cfg.use_batchnorm:
            layers.append(nn.BatchNorm1d(cfg.in_dim))
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        widths = [cfg.in_dim] + [cfg.hidden_dim] * (cfg.depth - 1) + [cfg.out_dim]
        for i in range(cfg.depth):
            layers.append(EqualizedLinear(widths[i], widths[i + 1], cfg.equalized_lr))
            if i < cfg.depth - 1 or cfg.final_activation:
                layers.append(nn.LeakyReLU(cfg.lrelu_slope))
        self.net = nn.Sequential(*layers)
        self.init_weights()

    def init_weights(self) -> None:
        """Effective weights N(0, 1/fan_in) (stored N(0, 1) when equalised), zero biases."""
        for m in self.modules():
            if isinstance(m, EqualizedLinear):
                std = 1.0 if self.cfg.equalized_lr else 1.0 / math.sqrt(m.in_features)
                nn.init.normal_(m.weight, 0.0, std)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, text: torch.Tensor, spatial: torch.Tensor | None = None) -> torch.Tensor:
        """w (B, w_dim) or w+ (B, num_ws, w_dim) from text (B, text_dim), spatial (B, spatial_dim).

        Args:
            text: FaRL text embedding, or the (pseudo) image embedding during training.
            spatial: autoencoder / 3DMM embedding; None only when cfg.spatial_dim == 0.
        """
        x = self._concat_input(text, spatial)  # (B, text_dim + spatial_dim)
        out = self.net(x)  # (B, out_dim)
        if self.cfg.output == "wplus":
            return out.reshape(out.shape[0], self.cfg.num_ws, self.cfg.w_dim)  # (B, num_ws, w_dim)
        return out

    def _concat_input(self, text: torch.Tensor, spatial: torch.Tensor | None) -> torch.Tensor:
        cfg = self.cfg
        if text.ndim != 2 or text.shape[1] != cfg.text_dim:
            raise ValueError(f"text must be (B, {cfg.text_dim}), got {tuple(text.shape)}.")
        if cfg.spatial_dim == 0:
            if spatial is not None:
                raise ValueError("this MappingNet has spatial_dim=0 but a spatial input was given.")
            return text
        if spatial is None:
            raise ValueError(f"spatial input (B, {cfg.spatial_dim}) is required.")
        if spatial.ndim != 2 or spatial.shape[1] != cfg.spatial_dim:
            raise ValueError(f"spatial must be (B, {cfg.spatial_dim}), got {tuple(spatial.shape)}.")
        if spatial.shape[0] != text.shape[0]:
            raise ValueError(
                f"batch size B differs: text {text.shape[0]}, spatial {spatial.shape[0]}."
            )
        return torch.cat([text, spatial], dim=1)  # text first, as the authors' notebook


@dataclass(frozen=True)
class PseudoTextCfg:
    """Pseudo text embedding generation (PTEG) during MappingNet training."""

    enabled: bool = True  # False: the image embedding itself is the text-like input (y = f)
    noise_norm: float = 1.0  # length of the random direction added to f before renormalising


def pseudo_text_embedding(
    f: torch.Tensor, generator: torch.Generator | None = None, cfg: PseudoTextCfg = PseudoTextCfg()
) -> torch.Tensor:
    """Pseudo text embedding y = normalise(f + noise_norm * e/|e|), e ~ N(0, I), per row.

    Args:
        f: (B, D) L2-normalised image embeddings.
        generator: torch.Generator on f's device for reproducible noise; None = global RNG.
        cfg: PTEG switches; when disabled f is returned unchanged.
    """
    if f.ndim != 2:
        raise ValueError(f"f must be (B, D) embeddings, got shape {tuple(f.shape)}.")
    norms = f.norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
        raise ValueError(
            f"f must be L2-normalised per row; row norms span [{norms.min():.4f}, "
            f"{norms.max():.4f}]. Divide by f.norm(dim=1, keepdim=True) first."
        )
    if not cfg.enabled:
        return f
    e = torch.randn(f.shape, generator=generator, device=f.device, dtype=f.dtype)  # (B, D)
    y = f + cfg.noise_norm * e / e.norm(dim=1, keepdim=True)
    return y / y.norm(dim=1, keepdim=True)


@torch.no_grad()
def edit_direction(
    net: MappingNet, f_target: torch.Tensor, f_pivot: torch.Tensor, f_spatial: torch.Tensor | None
) -> torch.Tensor:
    """Latent edit delta = Net(f_target, f_spatial) - Net(f_pivot, f_spatial), in eval mode.

    Args:
        net: a trained MappingNet (its train/eval mode is restored afterwards).
        f_target: (B, text_dim) embedding of the target description (e.g. "a smiling face").
        f_pivot: (B, text_dim) embedding of the neutral/pivot description.
        f_spatial: (B, spatial_dim) spatial embedding of the image being edited.
    """
    if f_target.shape != f_pivot.shape:
        raise ValueError(
            f"f_target {tuple(f_target.shape)} and f_pivot {tuple(f_pivot.shape)} differ."
        )
    was_training = net.training
    net.eval()  # BatchNorm running statistics and no Dropout: a deterministic direction
    try:
        return net(f_target, f_spatial) - net(f_pivot, f_spatial)
    finally:
        net.train(was_training)


def apply_edit(
    w_plus: torch.Tensor, delta: torch.Tensor, beta: float, rows: Sequence[int] | None = None
) -> torch.Tensor:
    """Edited w+ = w_plus + beta * delta on the chosen rows of w+ (default: all rows).

    Args:
        w_plus: (B, num_ws, w_dim) latent of the image to edit (e.g. an e4e inversion).
        delta: (B, w_dim) or (w_dim,) from a w MappingNet, broadcast to every chosen row, or
            (B, num_ws, w_dim) from a w+ MappingNet.
        beta: edit strength; 0 returns w_plus unchanged.
        rows: indices of the w+ rows to edit (e.g. range(0, 8) for coarse/middle styles);
            None edits every row, which is what a w-space MappingNet's single w implies.
    """
    if w_plus.ndim != 3:
        raise ValueError(f"w_plus must be (B, num_ws, w_dim), got {tuple(w_plus.shape)}.")
    if delta.ndim in (1, 2):
        delta = delta.unsqueeze(-2)  # (B, 1, w_dim) or (1, w_dim): broadcast over rows
    if delta.shape[-1] != w_plus.shape[-1]:
        raise ValueError(
            f"delta w_dim is {delta.shape[-1]}, expected {w_plus.shape[-1]} (w_plus last dim)."
        )
    step = beta * delta.expand_as(w_plus)  # (B, num_ws, w_dim)
    if rows is None:
        return w_plus + step
    mask = torch.zeros(w_plus.shape[1], dtype=w_plus.dtype, device=w_plus.device)
    mask[list(rows)] = 1.0
    return w_plus + step * mask[:, None]  # (num_ws, 1) row selector


# Authors' Lightning checkpoints: {"state_dict": {"map_fn.net.<i>...": tensor}}; their
# EqualizedLinear keeps the weight in a child module, hence ".weight.weight".
OFFICIAL_PREFIX = "map_fn."
OFFICIAL_RENAMES = ((".weight.weight", ".weight"),)


def load_official_mapping_net(
    path: str | os.PathLike[str], cfg: MappingNetCfg = MappingNetCfg()
) -> MappingNet:
    """A MappingNet in eval mode with weights from an authors' `.ckpt` (Lightning) file.

    Read without running code (see lightning_checkpoint.py); every key must belong to the
    authors' `map_fn`, so a left-over key is an error naming it.

    Args:
        path: local file or fsspec URL, e.g. `epoch=267-loss-l1=0.2001-cos=0.2274.ckpt`.
        cfg: must describe the file's architecture; the default is the authors' setup.
    """
    state, foreign = {}, []
    for key, value in read_lightning_checkpoint(path).state_dict.items():
        if not key.startswith(OFFICIAL_PREFIX):
            foreign.append(key)
            continue
        name = key[len(OFFICIAL_PREFIX):]
        for old, new in OFFICIAL_RENAMES:
            name = name[: -len(old)] + new if name.endswith(old) else name
        state[name] = value
    net = MappingNet(cfg)
    # leftovers come back (not raised) so that the message below lists them with the foreign ones
    unexpected = foreign + load_state_checked(net, state, path, file_prefix=OFFICIAL_PREFIX,
                                              allowed_extra=lambda key: True)
    if unexpected:
        raise CheckpointError(
            path, f"{len(unexpected)} key(s) are not part of the authors' MappingNet: "
                  f"{', '.join(sorted(unexpected)[:8])}.",
            "Is this a MappingNet file of the authors (text+mask or text+sketch)?")
    return net.eval()
