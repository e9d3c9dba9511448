"""Fabricated face-parser weights in the official containers, filled with random values.

* BiSeNet: a plain state_dict as face-parsing.PyTorch's `torch.save(net.state_dict())` writes it
  (`79999_iter.pth`). The key list here is written out from upstream's model.py / resnet.py
  layout, independently of mm2latent's module, so tests can compare the two.
* facer `farl/celebm/448`: a TorchScript module with the official call contract
  (float RGB [0, 1] in, `(logits, {})` out, logits (B, 19, 512, 512) normalised inside).
"""

from __future__ import annotations

from collections import OrderedDict
import warnings
from pathlib import Path
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

Shape = Tuple[int, ...]


def official_bisenet_shapes(width: int = 64, n_classes: int = 19) -> "OrderedDict[str, Shape]":
    """Key -> shape of face-parsing.PyTorch's BiSeNet state_dict (width 64 = `79999_iter.pth`)."""
    w = width
    shapes: OrderedDict[str, Shape] = OrderedDict()

    def conv(prefix: str, out_c: int, in_c: int, k: int) -> None:
        shapes[f"{prefix}.weight"] = (out_c, in_c, k, k)

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    def conv_bn_relu(prefix: str, in_c: int, out_c: int, k: int) -> None:
        conv(f"{prefix}.conv", out_c, in_c, k)
        bn(f"{prefix}.bn", out_c)

    conv("cp.resnet.conv1", w, 3, 7)
    bn("cp.resnet.bn1", w)
    for layer, (in_c, out_c) in enumerate([(w, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 8 * w)], 1):
        for block in (0, 1):
            p = f"cp.resnet.layer{layer}.{block}"
            conv(f"{p}.conv1", out_c, in_c if block == 0 else out_c, 3)
            bn(f"{p}.bn1", out_c)
            conv(f"{p}.conv2", out_c, out_c, 3)
            bn(f"{p}.bn2", out_c)
            if block == 0 and layer > 1:
                conv(f"{p}.downsample.0", out_c, in_c, 1)
                bn(f"{p}.downsample.1", out_c)
    for name, in_c in (("arm16", 4 * w), ("arm32", 8 * w)):
        conv_bn_relu(f"cp.{name}.conv", in_c, 2 * w, 3)
        conv(f"cp.{name}.conv_atten", 2 * w, 2 * w, 1)
        bn(f"cp.{name}.bn_atten", 2 * w)
    conv_bn_relu("cp.conv_head32", 2 * w, 2 * w, 3)
    conv_bn_relu("cp.conv_head16", 2 * w, 2 * w, 3)
    conv_bn_relu("cp.conv_avg", 8 * w, 2 * w, 1)
    conv_bn_relu("ffm.convblk", 4 * w, 4 * w, 1)
    conv("ffm.conv1", w, 4 * w, 1)
    conv("ffm.conv2", 4 * w, w, 1)
    for name, in_c, mid in (("conv_out", 4 * w, 4 * w), ("conv_out16", 2 * w, w),
                            ("conv_out32", 2 * w, w)):
        conv_bn_relu(f"{name}.conv", in_c, mid, 3)
        conv(f"{name}.conv_out", n_classes, mid, 1)
    return shapes


def fabricate_bisenet_state(width: int = 8, n_classes: int = 19, seed: int = 0
                            ) -> "OrderedDict[str, torch.Tensor]":
    """Random tensors with the official keys and shapes (He-scaled convs, plausible BN stats)."""
    gen = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in official_bisenet_shapes(width, n_classes).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(80000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        elif key.endswith(".weight"):  # BatchNorm scale
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:  # BatchNorm bias / running mean
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


def write_bisenet_checkpoint(path: Path, width: int = 8, seed: int = 0,
                             state: "OrderedDict[str, torch.Tensor] | None" = None) -> Path:
    """torch.save a (fabricated unless given) BiSeNet state_dict to `path`; returns `path`."""
    torch.save(state if state is not None else fabricate_bisenet_state(width, seed=seed), path)
    return path


class FakeFarlCelebm(nn.Module):
    """Scriptable stand-in for facer's celebm parser: same inputs and outputs, random weights.

    With `left_class`/`right_class` >= 0 it ignores the image and labels the left half of its
    output `left_class` and the right half `right_class`, which lets tests follow geometry and
    label remapping exactly.
    """

    def __init__(self, n_classes: int = 19, out_size: int = 512, left_class: int = -1,
                 right_class: int = -1) -> None:
        super().__init__()
        # CLIP mean/std, as FaRL's backbone normalises inside the script
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
        self.register_buffer("mean", mean.view(1, 3, 1, 1))  # (1, 3, 1, 1)
        self.register_buffer("std", std.view(1, 3, 1, 1))  # (1, 3, 1, 1)
        self.head = nn.Conv2d(3, n_classes, 1)
        self.n_classes = n_classes
        self.out_size = out_size
        self.left_class = left_class
        self.right_class = right_class

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        x = (image - self.mean) / self.std
        logits = self.head(F.avg_pool2d(x, 8))  # (B, 19, 56, 56) for a 448 input
        logits = F.interpolate(logits, size=[self.out_size, self.out_size], mode="bilinear",
                               align_corners=False)  # (B, 19, 512, 512)
        if self.left_class >= 0:
            xs = torch.arange(self.out_size, device=image.device).view(1, 1, 1, self.out_size)
            cls = torch.where(xs < self.out_size // 2, self.left_class, self.right_class)
            chans = torch.arange(self.n_classes, device=image.device).view(1, self.n_classes, 1, 1)
            logits = (chans == cls).to(logits.dtype).expand(logits.shape) * 10.0
        aux: Dict[str, torch.Tensor] = {}
        return logits, aux


def write_facer_farl_script(path: Path, seed: int = 0, **kwargs: int) -> Path:
    """torch.jit.save a scripted FakeFarlCelebm (kwargs go to its constructor); returns `path`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = FakeFarlCelebm(**kwargs).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is facer's format
        torch.jit.save(torch.jit.script(module), str(path))
    return path
