"""CLIP-style image/text towers (FaRL and OpenAI CLIP) built from open_clip's own classes.

MM2Latent embeds captions and images with FaRL (a CLIP ViT-B/16 trained on LAION-Face) and
evaluates with OpenAI CLIP (ViT-B/32 for CLIP score, ViT-L/14@336 for CMMD). All three share
OpenAI's parameter layout, which open_clip's `CLIP` class reproduces key for key when built with
QuickGELU, so one module serves every model and the loaders (clip_loaders.py) only check and copy
tensors. Nothing here fetches anything: open_clip is only asked for classes, the tokenizer (whose
BPE vocabulary ships inside the package) and the normalisation constants.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIPTextCfg, CLIPVisionCfg
from torch import nn

from mm2latent.models.clip_tower_cfg import CONTEXT_LENGTH, ClipTowerCfg
from mm2latent.models.image_checks import check_rgb_images
from mm2latent.models.pil_resize import pil_resize_crop

logger = logging.getLogger(__name__)

def tokenize(texts: Sequence[str], context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """CLIP BPE tokens (B, context_length) int64: lowercased, SOT ... EOT, zero padded.

    Texts longer than context_length are truncated with EOT kept last (open_clip's behaviour;
    OpenAI's clip.tokenize would raise instead). Facial captions are far shorter than 75 tokens.

    Args:
        texts: the captions; a bare str is rejected because it would be read per character.
        context_length: tokens per row, including SOT/EOT.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("tokenize expects a sequence of str (wrap a single caption in a list).")
    if len(texts) == 0:
        raise ValueError("tokenize got no texts; expected at least one caption.")
    return open_clip.tokenize(list(texts), context_length=context_length)  # (B, L)


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(H, W) after resizing the shorter side to `size` (torchvision Resize(int) rounding)."""
    # torchvision truncates the long side: int(size * long / short), as CLIP's transform did.
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def clip_preprocess(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """CLIP preprocessing on a batch: shorter side -> image_size (bicubic), centre crop, mean/std.

    uint8 input gets exactly the official pixels: OpenAI's / FaRL's pipeline runs Pillow's
    bicubic resize on a uint8 image (Resize(BICUBIC), CenterCrop, ToTensor, Normalize), and
    pil_resize.pil_resize_crop reproduces Pillow bit for bit. Use it wherever the official
    numbers matter (dataset embeddings, benchmark scores).

    Float input takes a differentiable path (gradients flow to `images`) that matches Pillow to
    about 1/255: torch's antialiased bicubic (Pillow's a = -0.5 kernel widened by the downscale
    factor) in two passes with a clamp between, as Pillow clips its uint8 intermediate, but
    without Pillow's two uint8 roundings.

    Args:
        images: (B, 3, H, W) uint8 RGB, or float RGB in [0, 1]; any H, W.
        image_size: output side in pixels.
    """
    if images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3:
        return _normalise(_pil_resize_center_crop(images, image_size).float() / 255)
    check_rgb_images(images)
    _, _, height, width = images.shape
    new_h, new_w = resized_size(height, width, image_size)
    x = images
    # PIL resizes horizontally, stores the intermediate as uint8 (clipping overshoot), then
    # vertically; two separable passes with a clamp between reproduce that clipping.
    if new_w != width:
        x = F.interpolate(x, size=(height, new_w), mode="bicubic", align_corners=False,
                          antialias=True).clamp(0.0, 1.0)  # (B, 3, H, new_w)
    if new_h != height:
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False,
                          antialias=True).clamp(0.0, 1.0)  # (B, 3, new_h, new_w)
    top, left = _center_crop_offsets(new_h, new_w, image_size)
    return _normalise(x[:, :, top:top + image_size, left:left + image_size])  # (B, 3, S, S)


def _center_crop_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """(top, left) of torchvision's CenterCrop(size) on an image of (height, width)."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0))


def _pil_resize_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> uint8 (B, 3, S, S): Pillow bicubic shorter side -> S, centre crop."""
    new_h, new_w = resized_size(*images.shape[-2:], size)
    top, left = _center_crop_offsets(new_h, new_w, size)
    return pil_resize_crop(images, (new_h, new_w), (top, left, size, size))  # (B, 3, S, S)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std with CLIP's per-channel constants, as torchvision's Normalize."""
    mean = torch.tensor(OPENAI_DATASET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def build_open_clip(cfg: ClipTowerCfg) -> open_clip.CLIP:
    """An untrained fp32 open_clip CLIP whose state_dict keys/shapes equal OpenAI's layout."""
    vision = CLIPVisionCfg(layers=cfg.vision_layers, width=cfg.vision_width,
                           head_width=cfg.vision_width // cfg.vision_heads,
                           patch_size=cfg.patch_size, image_size=cfg.image_size)
    text = CLIPTextCfg(context_length=cfg.context_length, vocab_size=cfg.vocab_size,
                       width=cfg.text_width, heads=cfg.text_heads, layers=cfg.text_layers)
    return open_clip.CLIP(cfg.embed_dim, vision_cfg=vision, text_cfg=text,
                          quick_gelu=cfg.quick_gelu)


class ClipEmbedder(nn.Module):
    """Frozen CLIP towers: [0,1] images and raw captions -> L2-normalised joint embeddings.

    Parameters are frozen (requires_grad False) because MM2Latent never fine-tunes CLIP/FaRL;
    gradients still flow to the input images. `model` is the open_clip CLIP, so its
    state_dict keys are OpenAI's (visual.conv1.weight, text_projection, ...).
    """

    def __init__(self, cfg: ClipTowerCfg = ClipTowerCfg()) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = build_open_clip(cfg)
        # Keys the loader found in the file but did not use (e.g. FaRL's MIM head).
        self.extra_keys: tuple[str, ...] = ()
        self.init_weights()

    def init_weights(self) -> None:
        """OpenAI CLIP's init for both towers (only the weight-free `tiny` preset relies on it)."""
        m = self.model
        for width, layers, blocks in ((m.transformer.width, m.transformer.layers,
                                       m.transformer.resblocks),
                                      (m.visual.transformer.width, m.visual.transformer.layers,
                                       m.visual.transformer.resblocks)):
            proj_std = width ** -0.5 * (2 * layers) ** -0.5
            for block in blocks:
                nn.init.normal_(block.attn.in_proj_weight, std=width ** -0.5)
                nn.init.zeros_(block.attn.in_proj_bias)
                nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
                nn.init.zeros_(block.attn.out_proj.bias)
                nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
                nn.init.zeros_(block.mlp.c_fc.bias)
                nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
                nn.init.zeros_(block.mlp.c_proj.bias)
        nn.init.normal_(m.token_embedding.weight, std=0.02)
        nn.init.normal_(m.positional_embedding, std=0.01)
        nn.init.normal_(m.text_projection, std=m.transformer.width ** -0.5)
        v_scale = m.visual.transformer.width ** -0.5  # OpenAI draws these as scale * randn
        nn.init.normal_(m.visual.class_embedding, std=v_scale)
        nn.init.normal_(m.visual.positional_embedding, std=v_scale)
        nn.init.normal_(m.visual.proj, std=v_scale)
        nn.init.constant_(m.logit_scale, math.log(1 / 0.07))
        self.requires_grad_(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """clip_preprocess at this model's image_size."""
        return clip_preprocess(images, self.cfg.image_size)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) unit-norm image embeddings.

        Args:
            images: (B, 3, H, W) uint8 RGB (preprocessed exactly as the official pipeline), or
                float RGB in [0, 1] (differentiable, within ~1/255 of it); any H, W.
        """
        weight = self.model.visual.conv1.weight
        x = self.preprocess(images.to(weight.device)).to(weight.dtype)  # (B, 3, S, S)
        return self.model.encode_image(x, normalize=True)  # (B, E)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, embed_dim) unit-norm text embeddings.

        Args:
            texts: B captions (lowercased and BPE-tokenised here).
        """
        tokens = tokenize(texts, self.cfg.context_length).to(self.model.positional_embedding.device)
        return self.model.encode_text(tokens, normalize=True)  # (B, E)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as encode_image."""
        return self.encode_image(images)
