"""Convolutional autoencoders that turn a map (face mask, sketch, ...) into a 512-d spatial embedding.

MM2Latent encodes each spatial modality with its own small autoencoder and feeds the flattened
bottleneck to the MappingNet next to the text embedding. The authors' published networks
(`models/greyseg_encoder`, `models/sketch_encoder` in Open-Debin/MM2Latent) work at 256 px and
use five stages of [3x3 conv, act, 2x2 stride-2 conv, act] with widths 16, 32, 32, 16, 8, so the
bottleneck is an 8-channel 8x8 map = 512 values, flattened in (C, H, W) order. There is no fully
connected layer: the embedding is the conv feature map itself. The mask network has no
normalisation and a Sigmoid output (MSE, Adam lr 1e-3); the sketch network adds a 3x3 stem conv
and BatchNorm after every conv (Adam lr 1e-2 by default); both use LeakyReLU with torch's
default slope 0.01. This module rebuilds that family from a config; it is not a key-for-key port.

Mask input encoding. The authors store class ids as grey levels (id * 10 in an 8-bit PNG, read
back as id * 10 / 255) and regress them with MSE. The default here is one-hot (`num_classes`
channels) instead: with grey levels MSE treats "nose vs eye_g" (ids 2 and 3) as a smaller error
than "nose vs cloth" (2 and 18), an ordering the classes do not have, and neighbouring classes
sit only 10/255 apart, so rounding the decoder output back to ids is fragile. One-hot costs 19x
input and output channels, which only touches the first and last conv (a few thousand weights).
`mask_encoding="grey"` reproduces the authors' input encoding.

Other map modalities. `kind` is the modality's name; the mask and sketch networks have the
behaviour above, any other kind takes `in_channels` as its modality's MapInput.to_input makes
them (declared by the modality, see presets.map_autoencoder) and outputs raw values, which its
MapInput.ae_loss compares with the input.

The authors' published checkpoints. `arch="official"` builds their exact module layout (see
`autoencoders_official.py`) so their `.ckpt` files load by name; the presets `mask_official`
and `sketch_official` (mm2latent.presets.AUTOENCODER_PRESETS) also reproduce their inputs: grey
levels of FACER label ids (their masks come from facer `farl/celebm/448`, stored as facer id *
10), and sketch strokes at 255 / 250 = 1.02 (their `Normalize(0, 250/255)` after ToTensor), not
1.0.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch
from torch import nn

from mm2latent_core.dims import LATENT_DIM, NUM_MASK_CLASSES
from mm2latent_core.errors import ConfigError
from mm2latent.models.autoencoders_official import SKETCH_HEAD_CHANNELS, build_official
from mm2latent.models.face_parser.labels import FACER_CELEBM_TO_CELEBAMASK_LUT

logger = logging.getLogger(__name__)

# Grey level of class id k in the authors' mask PNGs after ToTensor: k * 10 / 255.
GREY_LEVEL_STEP = 10.0 / 255.0

OFFICIAL_KINDS = ("mask", "sketch")  # the authors' networks exist for these modalities only
MASK_ENCODINGS = ("onehot", "grey")
ACTIVATIONS = ("lrelu", "silu")
ARCHES = ("ours", "official")
LABEL_ORDERS = ("celebamask", "facer")
# The authors' sketch input: ToTensor (1.0 per stroke) then Normalize(mean 0, std 250/255).
OFFICIAL_STROKE_VALUE = 255.0 / 250.0
# CelebAMask-HQ id -> facer id (inverse of the parser's table), for the authors' grey masks.
_CELEBAMASK_TO_FACER = torch.from_numpy(FACER_CELEBM_TO_CELEBAMASK_LUT.argsort().astype("int64"))
_FACER_TO_CELEBAMASK = torch.from_numpy(FACER_CELEBM_TO_CELEBAMASK_LUT.astype("int64"))


@dataclass(frozen=True)
class AutoencoderCfg:
    """Architecture of a map modality's autoencoder (mask, sketch or another MapInput modality)."""

    kind: str = "mask"  # its modality: "mask" (Sigmoid output), "sketch" (logits), another (raw output)
    resolution: int = 256  # input H = W in pixels; authors' img_size = 256
    in_channels: int = NUM_MASK_CLASSES  # input channels: num_classes for one-hot masks, 1 for grey/sketch, the modality's otherwise
    num_classes: int = NUM_MASK_CLASSES  # mask classes (ids 0..num_classes-1); unused for sketches
    mask_encoding: str = "onehot"  # "onehot" or "grey" (authors: id * 10 / 255); masks only
    widths: tuple[int, ...] = (16, 32, 32, 16, 8)  # channels per stage; each stage halves H, W
    bottleneck_dim: int = LATENT_DIM  # widths[-1] * (resolution / 2**len(widths))**2 must equal this
    stem: bool = False  # extra 3x3 conv (1 -> widths[0]) before the stages; authors: sketch only
    batchnorm: bool = False  # BatchNorm2d after every conv; authors: sketch True, mask False
    activation: str = "lrelu"  # "lrelu" or "silu"
    lrelu_slope: float = 0.01  # LeakyReLU negative slope (torch default, as the authors)
    arch: str = "ours"  # module layout: "ours" or "official" (the authors' networks, key for key)
    label_order: str = "celebamask"  # mask ids fed to the network: "celebamask" or "facer" (authors)
    stroke_value: float = 1.0  # sketch input value of a stroke; authors: 255/250 = 1.02

    def __post_init__(self) -> None:
        if not self.kind or not isinstance(self.kind, str):
            raise ConfigError(f"kind must name the autoencoder's map modality, got {self.kind!r}.")
        if self.arch == "official" and self.kind not in OFFICIAL_KINDS:
            raise ConfigError(f"arch='official' exists for {', '.join(OFFICIAL_KINDS)} only, not "
                              f"kind={self.kind!r}; use arch='ours'.")
        if self.in_channels < 1:
            raise ConfigError(f"in_channels must be >= 1, got {self.in_channels}.")
        _check_choice("mask_encoding", self.mask_encoding, MASK_ENCODINGS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("arch", self.arch, ARCHES)
        _check_choice("label_order", self.label_order, LABEL_ORDERS)
        if self.label_order == "facer" and self.num_classes != len(_FACER_TO_CELEBAMASK):
            raise ConfigError(f"label_order='facer' needs num_classes={len(_FACER_TO_CELEBAMASK)}.")
        if not self.stroke_value > 0:
            raise ConfigError(f"stroke_value must be > 0, got {self.stroke_value}.")
        if self.arch == "official" and self.kind == "mask" and self.batchnorm:
            raise ConfigError("the authors' mask network has no BatchNorm; set batchnorm=False.")
        if self.arch == "official" and self.kind == "sketch" and not (self.stem and self.batchnorm):
            raise ConfigError("the authors' sketch network has a stem and BatchNorm; set "
                              "stem=True and batchnorm=True.")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ConfigError(f"widths must be positive channel counts, got {self.widths}.")
        if self.in_channels != self.expected_in_channels:
            raise ConfigError(
                f"in_channels={self.in_channels} does not fit kind={self.kind!r}, "
                f"mask_encoding={self.mask_encoding!r}: expected {self.expected_in_channels}."
            )
        side = self.resolution >> len(self.widths)
        if side << len(self.widths) != self.resolution or side < 1:
            raise ConfigError(
                f"resolution={self.resolution} is not divisible by 2**{len(self.widths)} "
                f"(one halving per stage in widths={self.widths})."
            )
        if self.widths[-1] * side * side != self.bottleneck_dim:
            raise ConfigError(
                f"bottleneck is widths[-1] * side**2 = {self.widths[-1]} * {side}**2 = "
                f"{self.widths[-1] * side * side}, but bottleneck_dim={self.bottleneck_dim}; "
                "change widths[-1], the number of stages or the resolution."
            )

    @property
    def expected_in_channels(self) -> int:
        """Input channels implied by kind and mask_encoding (another modality declares its own)."""
        if self.kind == "mask" and self.mask_encoding == "onehot":
            return self.num_classes
        return 1 if self.kind in OFFICIAL_KINDS else self.in_channels

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the bottleneck feature map before flattening."""
        side = self.resolution >> len(self.widths)
        return (self.widths[-1], side, side)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(choices)}.")


def official_variant(cfg: AutoencoderCfg) -> AutoencoderCfg:
    """`cfg`'s size in the authors' network and input encoding (the `official` training recipe).

    Masks: grey levels of facer ids, no BatchNorm; sketches: stem + BatchNorm, strokes at 1.02.
    Other modalities have no authors' network: ConfigError.
    """
    if cfg.kind not in OFFICIAL_KINDS:
        raise ConfigError(f"the official recipe exists for {', '.join(OFFICIAL_KINDS)} only, not "
                          f"{cfg.kind!r}; train it with recipe 'ours'.")
    if cfg.kind == "mask":
        return dataclasses.replace(cfg, arch="official", mask_encoding="grey", in_channels=1,
                                   label_order="facer", batchnorm=False, stem=False)
    return dataclasses.replace(cfg, arch="official", stem=True, batchnorm=True,
                               stroke_value=OFFICIAL_STROKE_VALUE)


# The authors' released networks and inputs (Open-Debin/MM2Latent at 1d381a2): the configs
# their checkpoints load into. Declared here, beside the architecture, so the loaders in
# official_models.py need nothing from the presets above them (presets name these too).
OFFICIAL_MASK_CFG = AutoencoderCfg(in_channels=1, mask_encoding="grey", arch="official",
                                   label_order="facer")
OFFICIAL_SKETCH_CFG = AutoencoderCfg(kind="sketch", in_channels=1, stem=True, batchnorm=True,
                                     arch="official", stroke_value=OFFICIAL_STROKE_VALUE)


def _conv_unit(cfg: AutoencoderCfg, conv: nn.Module, out_c: int) -> list[nn.Module]:
    """conv [+ BatchNorm] + activation, the repeated unit of both halves."""
    layers: list[nn.Module] = [conv]
    if cfg.batchnorm:
        layers.append(nn.BatchNorm2d(out_c))
    if cfg.activation == "lrelu":
        layers.append(nn.LeakyReLU(cfg.lrelu_slope))
    else:
        layers.append(nn.SiLU())
    return layers


def _build_encoder(cfg: AutoencoderCfg) -> nn.Sequential:
    """Stages of 3x3 conv then 2x2 stride-2 conv (learned pooling), one halving each."""
    bias = not cfg.batchnorm  # a bias before BatchNorm is cancelled by its mean subtraction
    layers: list[nn.Module] = []
    c_in = cfg.in_channels
    if cfg.stem:
        layers += _conv_unit(cfg, nn.Conv2d(c_in, cfg.widths[0], 3, 1, 1, bias=bias), cfg.widths[0])
        c_in = cfg.widths[0]
    for c_out in cfg.widths:
        layers += _conv_unit(cfg, nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias), c_out)
        layers += _conv_unit(cfg, nn.Conv2d(c_out, c_out, 2, 2, 0, bias=bias), c_out)
        c_in = c_out
    return nn.Sequential(*layers)


def _build_decoder(cfg: AutoencoderCfg) -> nn.Sequential:
    """Mirror of the encoder: 3x3 stride-2 transposed conv (doubles H, W) then 3x3 conv."""
    bias = not cfg.batchnorm
    widths = list(reversed(cfg.widths[:-1])) + [cfg.widths[0]]  # e.g. 16, 32, 32, 16, 16
    layers: list[nn.Module] = []
    c_in = cfg.widths[-1]
    for c_out in widths:
        up = nn.ConvTranspose2d(c_in, c_out, 3, 2, padding=1, output_padding=1, bias=bias)
        layers += _conv_unit(cfg, up, c_out)
        layers += _conv_unit(cfg, nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias), c_out)
        c_in = c_out
    # 1x1 projection to the output channels: mask -> in_channels, sketch -> 1 logit map.
    layers.append(nn.Conv2d(c_in, cfg.in_channels, 1))
    return nn.Sequential(*layers)


class SpatialAutoencoder(nn.Module):
    """A map modality's autoencoder whose flattened bottleneck is the spatial embedding.

    `forward` returns the decoder output: for masks values in [0, 1] (Sigmoid, as the authors'
    mask network, compared with MSE), for sketches raw logits (compared with BCE-with-logits),
    for other modalities the raw decoder output (their MapInput.ae_loss compares it).
    """

    def __init__(self, cfg: AutoencoderCfg) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.arch == "official":
            self.encoder, self.decoder = build_official(cfg)
        else:
            self.encoder, self.decoder = _build_encoder(cfg), _build_decoder(cfg)
        self.init_weights()

    def init_weights(self) -> None:
        """Kaiming-normal convs (fan_in, matched to the leaky slope), zero biases, unit BN."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=self.cfg.lrelu_slope, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.cfg
        expected = (cfg.in_channels, cfg.resolution, cfg.resolution)
        if x.ndim != 4:
            raise ValueError(f"expected input (B, C, H, W), got {x.ndim} dims {tuple(x.shape)}.")
        for name, got, want in zip(("C", "H", "W"), x.shape[1:], expected):
            if got != want:
                raise ValueError(
                    f"input dimension {name} is {got}, expected {want} for a {cfg.kind} "
                    f"autoencoder at {cfg.resolution} px (shape {tuple(x.shape)})."
                )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial embedding (B, bottleneck_dim) of an input (B, in_channels, R, R)."""
        self._check_input(x)
        z = self.encoder(x)  # (B, C, h, w)
        return z.flatten(1)  # (B, C*h*w), (C, H, W) order as the authors' reshape

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction (B, in_channels, R, R) of embeddings (B, bottleneck_dim)."""
        if z.ndim != 2 or z.shape[1] != self.cfg.bottleneck_dim:
            raise ValueError(
                f"embedding must be (B, {self.cfg.bottleneck_dim}), got {tuple(z.shape)}."
            )
        fmap = z.reshape(z.shape[0], *self.cfg.bottleneck_shape)  # (B, C, h, w)
        out = self.decoder(fmap)  # (B, in_channels, R, R); authors' sketch: (B, 2, R, R)
        if self.cfg.kind == "mask":
            return torch.sigmoid(out)
        if out.shape[1] == SKETCH_HEAD_CHANNELS:
            # softmax over (background, stroke) == sigmoid(stroke - background): one logit map
            return out[:, 1:2] - out[:, 0:1]  # (B, 1, R, R)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode then decode."""
        return self.decode(self.encode(x))


def mask_to_input(mask: torch.Tensor, cfg: AutoencoderCfg) -> torch.Tensor:
    """Float network input (B, in_channels, H, W) from integer class maps (B, H, W).

    Args:
        mask: class ids in [0, cfg.num_classes), any integer dtype.
        cfg: a mask AutoencoderCfg; selects one-hot or the authors' grey levels (id * 10 / 255).
    """
    if cfg.kind != "mask":
        raise ConfigError(f"mask_to_input needs a mask config, got kind={cfg.kind!r}.")
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, H, W) class ids, got shape {tuple(mask.shape)}.")
    if mask.dtype.is_floating_point or mask.dtype == torch.bool:
        raise ValueError(f"mask must hold integer class ids, got dtype {mask.dtype}.")
    ids = mask.long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= cfg.num_classes):
        raise ValueError(
            f"mask ids must lie in [0, {cfg.num_classes}), found "
            f"[{int(ids.min())}, {int(ids.max())}]."
        )
    if cfg.label_order == "facer":
        ids = _CELEBAMASK_TO_FACER.to(ids.device)[ids]  # (B, H, W) facer ids, as the authors
    if cfg.mask_encoding == "grey":
        return (ids.float() * GREY_LEVEL_STEP).unsqueeze(1)  # (B, 1, H, W)
    onehot = nn.functional.one_hot(ids, cfg.num_classes)  # (B, H, W, K)
    return onehot.permute(0, 3, 1, 2).float()  # (B, K, H, W)


def decode_to_mask(recon: torch.Tensor, cfg: AutoencoderCfg) -> torch.Tensor:
    """Class map (B, H, W) uint8 from a mask reconstruction (B, in_channels, H, W).

    Args:
        recon: decoder output (Sigmoid values) or logits; one-hot takes the argmax over
            channels, grey rounds to the nearest level id * 10 / 255.
        cfg: the mask AutoencoderCfg that produced `recon`.
    """
    if cfg.kind != "mask":
        raise ConfigError(f"decode_to_mask needs a mask config, got kind={cfg.kind!r}.")
    if recon.ndim != 4 or recon.shape[1] != cfg.in_channels:
        raise ValueError(
            f"reconstruction must be (B, {cfg.in_channels}, H, W), got {tuple(recon.shape)}."
        )
    if cfg.mask_encoding == "grey":
        ids = torch.round(recon[:, 0] / GREY_LEVEL_STEP).clamp(0, cfg.num_classes - 1)  # (B, H, W)
    else:
        ids = recon.argmax(dim=1)  # (B, H, W)
    if cfg.label_order == "facer":
        ids = _FACER_TO_CELEBAMASK.to(ids.device)[ids.long()]  # back to CelebAMask-HQ ids
    return ids.to(torch.uint8)


def sketch_to_input(sketch: torch.Tensor, cfg: AutoencoderCfg) -> torch.Tensor:
    """Float network input (B, 1, H, W) in {0, stroke_value} from a sketch (B, H, W) or (B, 1, H, W).

    Args:
        sketch: stroke map, non-zero = stroke, any dtype.
        cfg: a sketch AutoencoderCfg.
    """
    if cfg.kind != "sketch":
        raise ConfigError(f"sketch_to_input needs a sketch config, got kind={cfg.kind!r}.")
    if sketch.ndim == 3:
        sketch = sketch.unsqueeze(1)  # (B, 1, H, W)
    if sketch.ndim != 4 or sketch.shape[1] != 1:
        raise ValueError(f"sketch must be (B, H, W) or (B, 1, H, W), got {tuple(sketch.shape)}.")
    return (sketch != 0).float() * cfg.stroke_value


def decode_to_sketch(logits: torch.Tensor) -> torch.Tensor:
    """Binary sketch (B, H, W) uint8 in {0, 1} from decoder logits (B, 1, H, W)."""
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"sketch logits must be (B, 1, H, W), got {tuple(logits.shape)}.")
    return (logits[:, 0] > 0).to(torch.uint8)  # (B, H, W); logit 0 = probability 0.5
