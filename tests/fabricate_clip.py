"""Fabricated FaRL `.pth` and OpenAI CLIP TorchScript `.pt` files with the official layout.

The shape table below is written from OpenAI's CLIP model definition (clip/model.py), not from
open_clip, so loading these files strictly also checks that open_clip's key set is OpenAI's.
Values are random (LayerNorm gains near 1, everything else small) so outputs are non-degenerate.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from mm2latent.models.clip_towers import ClipTowerCfg


def _block_shapes(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """One OpenAI ResidualAttentionBlock: nn.MultiheadAttention + c_fc/c_proj MLP (ratio 4)."""
    return {
        f"{prefix}attn.in_proj_weight": (3 * width, width),
        f"{prefix}attn.in_proj_bias": (3 * width,),
        f"{prefix}attn.out_proj.weight": (width, width),
        f"{prefix}attn.out_proj.bias": (width,),
        f"{prefix}ln_1.weight": (width,),
        f"{prefix}ln_1.bias": (width,),
        f"{prefix}mlp.c_fc.weight": (4 * width, width),
        f"{prefix}mlp.c_fc.bias": (4 * width,),
        f"{prefix}mlp.c_proj.weight": (width, 4 * width),
        f"{prefix}mlp.c_proj.bias": (width,),
        f"{prefix}ln_2.weight": (width,),
        f"{prefix}ln_2.bias": (width,),
    }


def openai_clip_shapes(cfg: ClipTowerCfg) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an OpenAI CLIP ViT state_dict (without the three integer entries)."""
    vw, tw = cfg.vision_width, cfg.text_width
    shapes: dict[str, tuple[int, ...]] = {
        "positional_embedding": (cfg.context_length, tw),
        "text_projection": (tw, cfg.embed_dim),
        "logit_scale": (),
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (cfg.grid_size ** 2 + 1, vw),
        "visual.proj": (vw, cfg.embed_dim),
        "visual.conv1.weight": (vw, 3, cfg.patch_size, cfg.patch_size),
        "visual.ln_pre.weight": (vw,),
        "visual.ln_pre.bias": (vw,),
    }
    for i in range(cfg.vision_layers):
        shapes.update(_block_shapes(f"visual.transformer.resblocks.{i}.", vw))
    shapes.update({"visual.ln_post.weight": (vw,), "visual.ln_post.bias": (vw,),
                   "token_embedding.weight": (cfg.vocab_size, tw)})
    for i in range(cfg.text_layers):
        shapes.update(_block_shapes(f"transformer.resblocks.{i}.", tw))
    shapes.update({"ln_final.weight": (tw,), "ln_final.bias": (tw,)})
    return shapes


def farl_mim_shapes(cfg: ClipTowerCfg, mim_layers: int = 1, mim_vocab: int = 64
                    ) -> dict[str, tuple[int, ...]]:
    """FaRL's masked-image-modelling extras (VisualTransformer.lm_transformer/ln_lm/lm_head)."""
    vw = cfg.vision_width
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(mim_layers):
        shapes.update(_block_shapes(f"visual.lm_transformer.resblocks.{i}.", vw))
    shapes.update({"visual.ln_lm.weight": (vw,), "visual.ln_lm.bias": (vw,),
                   "visual.lm_head.weight": (mim_vocab, vw), "visual.lm_head.bias": (mim_vocab,),
                   "visual.mask_token": (vw,)})
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random fp32 tensors for `shapes`: LayerNorm gains ~1, logit_scale log(1/0.07), rest ~0.02."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key == "logit_scale":
            state[key] = torch.tensor(4.6052)
        elif ".ln_" in key or key.startswith("ln_"):
            state[key] = (key.endswith("weight") * 1.0) + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.02 * torch.randn(shape, generator=gen)
    return state


def write_farl_pth(path: str | os.PathLike[str], cfg: ClipTowerCfg = ClipTowerCfg(),
                   with_mim_keys: bool = True, seed: int = 0) -> dict[str, torch.Tensor]:
    """Write {'state_dict': OpenAI-layout tensors (+ MIM extras)}; return the state dict."""
    shapes = openai_clip_shapes(cfg)
    if with_mim_keys:
        shapes.update(farl_mim_shapes(cfg))
    state = random_state(shapes, seed)
    torch.save({"state_dict": state}, path)
    return state


class _Node(nn.Module):
    """A bare container so dotted OpenAI names become a module tree TorchScript can save."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _openai_module_tree(state: dict[str, torch.Tensor], cfg: ClipTowerCfg) -> nn.Module:
    root = _Node()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = root
        for name in parents:
            if not hasattr(node, name):
                node.add_module(name, _Node())
            node = getattr(node, name)
        node.register_parameter(leaf, nn.Parameter(value.half(), requires_grad=False))
    # OpenAI's archives keep these as integer entries of the state_dict.
    for name, value in (("input_resolution", cfg.image_size),
                        ("context_length", cfg.context_length), ("vocab_size", cfg.vocab_size)):
        root.register_buffer(name, torch.tensor(value))
    return root


def write_openai_jit(path: str | os.PathLike[str], cfg: ClipTowerCfg = ClipTowerCfg(),
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """Write a TorchScript archive with OpenAI CLIP's fp16 state_dict; return it as fp32."""
    state = {k: v.half().float() for k, v in random_state(openai_clip_shapes(cfg), seed).items()}
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is OpenAI's format
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(_openai_module_tree(state, cfg)), str(path))
    return state
