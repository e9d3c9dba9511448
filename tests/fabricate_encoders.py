"""Fabricate DECA `deca_model.tar` and e4e `e4e_ffhq_encode.pt` files with random values.

The key lists and shapes are enumerated here from the upstream rules (DECA's torchvision-style
ResNet-50 + `layers` regressor; e4e's IR-SE50 `input_layer`/`body`/`styles`/`latlayer*`),
independently of mm2latent's modules, so a test comparing the two catches a naming slip.
Widths scale with the config; the official configs give the released files' shapes.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

import torch

from mm2latent.models.deca import DecaCfg
from mm2latent.models.e4e import E4ECfg

Shapes = dict[str, tuple[int, ...]]
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, ch: int) -> Shapes:
    return {f"{prefix}.{s}": (() if s == "num_batches_tracked" else (ch,)) for s in BN_SUFFIXES}


def official_deca_shapes(cfg: DecaCfg, out_dim: int | None = None) -> Shapes:
    """Key -> shape of DECA's ResnetEncoder state dict (E_flame; E_detail with out_dim=128)."""
    w = cfg.base_width
    shapes: Shapes = {"encoder.conv1.weight": (w, 3, 7, 7), **_bn("encoder.bn1", w)}
    in_ch = w
    for stage, n_blocks in enumerate((3, 4, 6, 3)):
        width = w * 2**stage
        for b in range(n_blocks):
            p = f"encoder.layer{stage + 1}.{b}"
            shapes[f"{p}.conv1.weight"] = (width, in_ch, 1, 1)
            shapes.update(_bn(f"{p}.bn1", width))
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            shapes.update(_bn(f"{p}.bn2", width))
            shapes[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            shapes.update(_bn(f"{p}.bn3", 4 * width))
            if b == 0:  # every stage's first block changes channels (layer1: 64 -> 256)
                shapes[f"{p}.downsample.0.weight"] = (4 * width, in_ch, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", 4 * width))
            in_ch = 4 * width
    out = cfg.code_dim if out_dim is None else out_dim
    shapes.update({
        "layers.0.weight": (cfg.regressor_width, in_ch), "layers.0.bias": (cfg.regressor_width,),
        "layers.2.weight": (out, cfg.regressor_width), "layers.2.bias": (out,),
    })
    return shapes


def official_e4e_encoder_shapes(cfg: E4ECfg) -> Shapes:
    """Key -> shape of Encoder4Editing's state dict (without the 'encoder.' prefix)."""
    b = cfg.base_width
    shapes: Shapes = {"input_layer.0.weight": (b, 3, 3, 3), **_bn("input_layer.1", b),
                      "input_layer.2.weight": (b,)}
    in_ch, n = b, 0
    for depth, units in zip((b, 2 * b, 4 * b, 8 * b), (3, 4, 14, 3), strict=True):
        for u in range(units):
            p = f"body.{n}"
            if in_ch != depth:
                shapes[f"{p}.shortcut_layer.0.weight"] = (depth, in_ch, 1, 1)
                shapes.update(_bn(f"{p}.shortcut_layer.1", depth))
            shapes.update(_bn(f"{p}.res_layer.0", in_ch))
            shapes[f"{p}.res_layer.1.weight"] = (depth, in_ch, 3, 3)
            shapes[f"{p}.res_layer.2.weight"] = (depth,)
            shapes[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
            shapes.update(_bn(f"{p}.res_layer.4", depth))
            red = depth // cfg.se_reduction
            shapes[f"{p}.res_layer.5.fc1.weight"] = (red, depth, 1, 1)
            shapes[f"{p}.res_layer.5.fc2.weight"] = (depth, red, 1, 1)
            in_ch, n = depth, n + 1
    n_styles = 2 * int(math.log2(cfg.stylegan_size)) - 2
    for i in range(n_styles):
        spatial = cfg.input_size // 16 * (1 if i < 3 else 2 if i < 7 else 4)
        width = cfg.w_dim if cfg.style_width is None else cfg.style_width  # 512 upstream
        for k in range(int(math.log2(spatial))):
            shapes[f"styles.{i}.convs.{2 * k}.weight"] = (width, 8 * b if k == 0 else width, 3, 3)
            shapes[f"styles.{i}.convs.{2 * k}.bias"] = (width,)
        shapes[f"styles.{i}.linear.weight"] = (cfg.w_dim, width)
        shapes[f"styles.{i}.linear.bias"] = (cfg.w_dim,)
    shapes.update({"latlayer1.weight": (8 * b, 4 * b, 1, 1), "latlayer1.bias": (8 * b,),
                   "latlayer2.weight": (8 * b, 2 * b, 1, 1), "latlayer2.bias": (8 * b,)})
    return shapes


def random_state(shapes: Shapes, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors for `shapes`: fan-in-scaled weights, 1-d weights near 1, positive var."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif len(shape) >= 2:
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        elif key.endswith("weight"):  # BN scale / PReLU slope: near 1 keeps the signal alive
            state[key] = 1.0 + torch.randn(shape, generator=gen) * 0.1
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.1
    return state


def deca_checkpoint(cfg: DecaCfg, seed: int = 0) -> dict[str, Any]:
    """A deca_model.tar object: E_flame and E_detail (ResnetEncoder, 128 outputs), D_detail.

    D_detail (the displacement generator) keeps its first layer's key names only, with small
    shapes: nothing in mm2latent reads it.
    """
    return {
        "E_flame": random_state(official_deca_shapes(cfg), seed),
        "E_detail": random_state(official_deca_shapes(cfg, out_dim=128), seed + 1),
        "D_detail": random_state({"l1.0.weight": (8, 4), "l1.0.bias": (8,)}, seed + 2),
    }


def write_deca_checkpoint(path: str | os.PathLike[str], cfg: DecaCfg, seed: int = 0,
                          legacy: bool = False) -> dict[str, Any]:
    """torch.save a fabricated deca_model.tar (zip format, or legacy with legacy=True)."""
    ckpt = deca_checkpoint(cfg, seed)
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    return ckpt


def e4e_checkpoint(cfg: E4ECfg, seed: int = 0, opts_namespace: bool = False) -> dict[str, Any]:
    """An e4e checkpoint object: {'state_dict': encoder.* + decoder.*, 'latent_avg', 'opts'}.

    Decoder keys are a small placeholder of rosinality's generator names (loaded elsewhere).
    `opts` is a dict as encoder4editing's coach saves it (vars(opts)); opts_namespace=True
    stores an argparse.Namespace as other pSp-family files do.
    """
    enc = random_state(official_e4e_encoder_shapes(cfg), seed)
    dec = random_state({"style.1.weight": (4, 4), "style.1.bias": (4,)}, seed + 1)
    state = {**{f"encoder.{k}": v for k, v in enc.items()},
             **{f"decoder.{k}": v for k, v in dec.items()}}
    n_styles = 2 * int(math.log2(cfg.stylegan_size)) - 2
    gen = torch.Generator().manual_seed(seed + 2)
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": cfg.stylegan_size,
            "start_from_latent_avg": True, "dataset_type": "ffhq_encode", "batch_size": 8,
            "checkpoint_path": None, "progressive_steps": [0, 20000, 22000], "lpips_lambda": 0.8}
    return {"state_dict": state,
            "latent_avg": torch.randn(n_styles, cfg.w_dim, generator=gen),
            "opts": argparse.Namespace(**opts) if opts_namespace else opts}


def write_e4e_checkpoint(path: str | os.PathLike[str], cfg: E4ECfg, seed: int = 0,
                         opts_namespace: bool = False) -> dict[str, Any]:
    """torch.save a fabricated e4e checkpoint; returns the saved object."""
    ckpt = e4e_checkpoint(cfg, seed, opts_namespace)
    torch.save(ckpt, path)
    return ckpt
