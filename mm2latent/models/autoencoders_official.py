"""The authors' own autoencoder networks (Open-Debin/MM2Latent at 1d381a2), key for key.

Both published checkpoints must load by name and compute what the authors' code computes, so
the module trees below keep the authors' attribute names; the maths is the family described in
`autoencoders.py`, only the layout differs:

* Mask network (`models/greyseg_encoder/model_arch.py`, class `Autoencoder`): the encoder is a
  Sequential of stages, each Sequential(conv 3x3, LeakyReLU, conv 2x2 stride 2, LeakyReLU), so
  keys read `encoder.<stage>.0.*` and `encoder.<stage>.2.*`; the decoder is ONE transposed conv
  per stage (3x3, stride 2) with LeakyReLU between, and no final 1x1 conv: keys
  `decoder.<2k>.*`. The last transposed conv outputs the input channel (1 grey level) and the
  authors end on a Sigmoid (applied in `SpatialAutoencoder.decode`, as for our networks).
* Sketch network (`models/sketch_encoder/sketch_autoencoder.py`): `encoder.conv1` + `bn1` stem,
  then `encoder.naivenet<k>` blocks of conv1/bn1/act/conv2/bn2/act (3x3, then 2x2 stride 2, no
  biases); the decoder mirrors them with a 3x3 stride-2 transposed conv as conv1, then
  `decoder.final_conv1`, a 1x1 conv to TWO channels trained with cross-entropy. Softmax over two
  classes equals a sigmoid of the logit difference, so `SpatialAutoencoder.decode` returns
  l1 - l0 and the BCE loss on it is their cross-entropy exactly.

LeakyReLU keeps torch's default slope 0.01 in both, as the authors' `nn.LeakyReLU(inplace=True)`.
"""

from __future__ import annotations

from typing import Protocol

from torch import nn

SKETCH_HEAD_CHANNELS = 2  # the authors' sketch decoder: background / stroke logits


class LayoutCfg(Protocol):
    """The fields of autoencoders.AutoencoderCfg these builders read.

    A structural type, so that this module needs nothing from autoencoders.py (which imports
    it to build the official layout): the two modules form no import circle.
    """

    # Read-only properties: the config is a frozen dataclass.
    @property
    def kind(self) -> str: ...  # "mask" or "sketch"
    @property
    def in_channels(self) -> int: ...  # input channels (1: grey mask or sketch)
    @property
    def widths(self) -> tuple[int, ...]: ...  # channels per stage; each stage halves H, W
    @property
    def activation(self) -> str: ...  # "lrelu" or "silu"
    @property
    def lrelu_slope(self) -> float: ...  # LeakyReLU negative slope


def _act(cfg: LayoutCfg) -> nn.Module:
    return nn.LeakyReLU(cfg.lrelu_slope) if cfg.activation == "lrelu" else nn.SiLU()


def build_official_mask_encoder(cfg: LayoutCfg) -> nn.Sequential:
    """encoder.<s> = Sequential(conv3x3, act, conv2x2/2, act) per stage, biases kept."""
    stages, c_in = [], cfg.in_channels
    for c_out in cfg.widths:
        stages.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), _act(cfg),
                                    nn.Conv2d(c_out, c_out, 2, 2, 0), _act(cfg)))
        c_in = c_out
    return nn.Sequential(*stages)


def build_official_mask_decoder(cfg: LayoutCfg) -> nn.Sequential:
    """decoder.<2k> = 3x3 stride-2 transposed conv; widths mirror the encoder down to 1 channel."""
    widths = list(reversed(cfg.widths[:-1])) + [cfg.in_channels]  # e.g. 16, 32, 32, 16, 1
    layers: list[nn.Module] = []
    c_in = cfg.widths[-1]
    for i, c_out in enumerate(widths):
        layers.append(nn.ConvTranspose2d(c_in, c_out, 3, 2, padding=1, output_padding=1))
        if i < len(widths) - 1:  # the last one is followed by the Sigmoid in decode()
            layers.append(_act(cfg))
        c_in = c_out
    return nn.Sequential(*layers)


class _NaiveBlock(nn.Module):
    """conv1 -> bn1 -> act -> conv2 -> bn2 -> act, the authors' `NaiveBlock` (no conv biases)."""

    def __init__(self, cfg: LayoutCfg, c_in: int, c_out: int, decoder: bool) -> None:
        super().__init__()
        if decoder:  # doubles H, W, then a 3x3 conv
            self.conv1 = nn.ConvTranspose2d(c_in, c_out, 3, 2, padding=1, output_padding=1, bias=False)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        else:  # 3x3 conv, then a 2x2 stride-2 conv halves H, W
            self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
            self.conv2 = nn.Conv2d(c_out, c_out, 2, 2, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = _act(cfg)

    def forward(self, x):
        return self.act(self.bn2(self.conv2(self.act(self.bn1(self.conv1(x))))))


class OfficialSketchEncoder(nn.Module):
    """The authors' `NaiveEncoder`: stem conv1/bn1/act, then naivenet1..N encoder blocks."""

    def __init__(self, cfg: LayoutCfg) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cfg.in_channels, cfg.widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.widths[0])
        self.act = _act(cfg)
        c_in = cfg.widths[0]
        for k, c_out in enumerate(cfg.widths, start=1):
            setattr(self, f"naivenet{k}", _NaiveBlock(cfg, c_in, c_out, decoder=False))
            c_in = c_out
        self.num_blocks = len(cfg.widths)

    def forward(self, x):
        x = self.act(self.bn1(self.conv1(x)))  # (B, widths[0], R, R)
        for k in range(1, self.num_blocks + 1):
            x = getattr(self, f"naivenet{k}")(x)  # halves H, W
        return x  # (B, widths[-1], R / 2**N, R / 2**N)


class OfficialSketchDecoder(nn.Module):
    """The authors' `NaiveDecoder`: naivenet1..N decoder blocks, then final_conv1 to 2 logits."""

    def __init__(self, cfg: LayoutCfg) -> None:
        super().__init__()
        widths = list(reversed(cfg.widths[:-1])) + [cfg.widths[0]]  # e.g. 16, 32, 32, 16, 16
        c_in = cfg.widths[-1]
        for k, c_out in enumerate(widths, start=1):
            setattr(self, f"naivenet{k}", _NaiveBlock(cfg, c_in, c_out, decoder=True))
            c_in = c_out
        self.num_blocks = len(widths)
        self.final_conv1 = nn.Conv2d(c_in, SKETCH_HEAD_CHANNELS, 1)

    def forward(self, x):
        for k in range(1, self.num_blocks + 1):
            x = getattr(self, f"naivenet{k}")(x)  # doubles H, W
        return self.final_conv1(x)  # (B, 2, R, R): background, stroke logits


def build_official(cfg: LayoutCfg) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) in the authors' layout for a mask or sketch config."""
    if cfg.kind == "mask":
        return build_official_mask_encoder(cfg), build_official_mask_decoder(cfg)
    return OfficialSketchEncoder(cfg), OfficialSketchDecoder(cfg)
