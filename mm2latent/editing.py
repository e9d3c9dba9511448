"""Latent edits of real images, text-driven and spatial, at one or several strengths (betas).

Both edits invert the photo with e4e to w+ and add beta * delta to every row of w+:
- text (the paper's text edit): delta = Net(f_target_text, s) - Net(f_pivot_text, s), with s
  the spatial embedding of the photo's own mask / sketch / 3DMM code unless given;
- spatial (the paper's mask / sketch / 3DMM edit): delta = Net(f_img, s_target) - Net(f_img,
  s_pivot), with f_img the photo's FaRL image embedding and s_pivot the embedding of the
  photo's own annotation unless given. The paper uses beta = 1 for these.

Batch invariance: on the CPU a matrix multiply rounds differently for small batches, and e4e
and the generator are not batch-invariant in the last bits. So the MappingNet and the FaRL
image tower run under mm2latent.batching.invariant_forward, and e4e and synthesis run one
latent at a time: an image's edits depend only on that image, and beta = 0 gives the
reconstruction bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from mm2latent import annotation
from mm2latent.annotation import stored_pixels
from mm2latent.batch_inputs import broadcast, check_betas, check_images, check_texts
from mm2latent.batching import invariant_forward, per_sample
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.mapping_net import MappingNet, apply_edit
from mm2latent.presets import PresetCfg
from mm2latent_core.modalities.network_input import Spatial

SPATIAL_DEFAULT_BETA = 1.0  # the paper's strength for mask / sketch / 3DMM edits


class EditModel(Protocol):
    """What an edit uses of the loaded models; mm2latent.inference.Mm2LatentGenerator is one.

    A structural type: the generator's own `edit` delegates to text_edit here, so this module
    must not import the inference package (that would close an import circle).
    """

    preset: PresetCfg  # its store_size is the size annotators and FaRL see photos at
    farl: ClipEmbedder
    mapping: MappingNet
    device: torch.device

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor: ...
    def spatial_embeddings(self, spatial: Spatial) -> torch.Tensor: ...
    def annotate(self, images01: torch.Tensor) -> Spatial: ...
    def invert(self, images01: torch.Tensor) -> torch.Tensor: ...
    def synthesize(self, w: torch.Tensor, noise_seed: int | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class EditBatch:
    """B photos edited at K strengths; row i belongs to photo i."""

    betas: tuple[float, ...]      # the K strengths, in order
    originals: torch.Tensor       # (B, R, R, 3) uint8 input photos resized to the generator's R
    inversion: torch.Tensor       # (B, num_ws, w_dim) e4e w+
    reconstruction: torch.Tensor  # (B, R, R, 3) uint8 synthesis of the inversion
    w_plus: torch.Tensor          # (B, K, num_ws, w_dim) edited latents
    images: torch.Tensor          # (B, K, R, R, 3) uint8 edited images

    def strip(self) -> np.ndarray:
        """(B * R, (K + 1) * R, 3) uint8: per photo one row, original | beta_1 | ... | beta_K."""
        tiles = torch.cat([self.originals[:, None], self.images], dim=1)  # (B, K + 1, R, R, 3)
        b, k, r = tiles.shape[:3]
        return tiles.permute(0, 2, 1, 3, 4).reshape(b * r, k * r, 3).cpu().numpy()


def _mapped(model: EditModel, text: torch.Tensor, space: torch.Tensor) -> torch.Tensor:
    """MappingNet(text, space) (B, w_dim); a row does not depend on the rest of the batch."""
    split = text.shape[1]
    joined = torch.cat([text, space], dim=1)  # (B, text_dim + spatial_dim)
    return invariant_forward(lambda x: model.mapping(x[:, :split], x[:, split:]), joined)


@torch.no_grad()
def text_direction(model: EditModel, target_text: str, pivot_text: str,
                   space: torch.Tensor) -> torch.Tensor:
    """(B, w_dim) delta = Net(f_target, s) - Net(f_pivot, s) for B spatial embeddings `space`."""
    texts = check_texts([target_text], "target_text") + check_texts([pivot_text], "pivot_text")
    target, pivot = model.text_embeddings(texts)  # (text_dim,) each
    rows = space.shape[0]
    return (_mapped(model, target.expand(rows, -1), space)
            - _mapped(model, pivot.expand(rows, -1), space))


@torch.no_grad()
def spatial_direction(model: EditModel, f_img: torch.Tensor, s_target: torch.Tensor,
                      s_pivot: torch.Tensor) -> torch.Tensor:
    """(B, w_dim) delta = Net(f_img, s_target) - Net(f_img, s_pivot)."""
    return _mapped(model, f_img, s_target) - _mapped(model, f_img, s_pivot)


@torch.no_grad()
def image_embeddings(model: EditModel, images01: torch.Tensor) -> torch.Tensor:
    """(B, 512) FaRL image embeddings of photos, seen at the stored size as synth-data sees them."""
    pixels = stored_pixels(check_images(images01), model.preset.store_size)  # (B, S, S, 3)
    images = annotation.to_float_images(pixels).to(model.device)  # (B, 3, S, S)
    return annotation.embed(model.farl.encode_image, images)


@torch.no_grad()
def invert_each(model: EditModel, images01: torch.Tensor) -> torch.Tensor:
    """e4e w+ (B, num_ws, w_dim), one photo at a time (batch-invariant)."""
    return per_sample(model.invert, images01)


@torch.no_grad()
def synthesize_each(model: EditModel, w_plus: torch.Tensor) -> torch.Tensor:
    """(N, R, R, 3) uint8 images of w+ (N, num_ws, w_dim), one latent at a time."""
    return per_sample(model.synthesize, w_plus)


def _originals(images01: torch.Tensor, size: int) -> torch.Tensor:
    """(B, R, R, 3) uint8 photos resized to the generator's resolution for side-by-side strips."""
    if images01.shape[-1] != size:
        images01 = F.interpolate(images01, size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=True)
    return (images01 * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()


def edit_latents(inversion: torch.Tensor, delta: torch.Tensor, betas: Sequence[float]) -> torch.Tensor:
    """(B, K, num_ws, w_dim) w+ + beta_k * delta for (B, num_ws, w_dim) w+ and (B, w_dim) delta."""
    return torch.stack([apply_edit(inversion, delta, beta) for beta in check_betas(betas)], dim=1)


@torch.no_grad()
def apply_direction(model: EditModel, images01: torch.Tensor, inversion: torch.Tensor,
                    delta: torch.Tensor, betas: Sequence[float]) -> EditBatch:
    """The EditBatch of w+ + beta * delta for every beta (delta: (B, w_dim))."""
    betas = check_betas(betas)
    w_plus = edit_latents(inversion, delta, betas)
    b, k = w_plus.shape[:2]
    images = synthesize_each(model, w_plus.flatten(0, 1))  # (B * K, R, R, 3)
    return EditBatch(betas=betas, originals=_originals(images01, images.shape[1]),
                     inversion=inversion, reconstruction=synthesize_each(model, inversion),
                     w_plus=w_plus, images=images.unflatten(0, (b, k)))


def condition_embeddings(model: EditModel, images01: torch.Tensor, spatial: Spatial | None,
           name: str) -> torch.Tensor:
    """(B, D) spatial embeddings: of `spatial` (one, or one per photo), else of the photos' own."""
    space = model.spatial_embeddings(model.annotate(images01) if spatial is None else spatial)
    rows = torch.empty(images01.shape[0], 1)
    return broadcast(space, rows, (name, "images"))[0]


@torch.no_grad()
def text_edit(model: EditModel, images01: torch.Tensor, target_text: str,
              pivot_text: str, betas: float | Sequence[float] = 1.0,
              spatial: Spatial | None = None) -> EditBatch:
    """Text edit of B photos at every beta.

    Args:
        model: the loaded inference models (its modality's MappingNet).
        images01: (B, 3, H, W) FFHQ-aligned RGB in [0, 1].
        target_text: description of the wanted result, e.g. "a smiling face".
        pivot_text: neutral description, e.g. "a face".
        betas: one strength or several; 0 gives the e4e reconstruction.
        spatial: the photos' conditions (one, or one per photo); None = annotate them.
    """
    betas = check_betas(betas)
    images01 = check_images(images01)
    delta = text_direction(model, target_text, pivot_text,
                           condition_embeddings(model, images01, spatial, "spatial conditions"))
    return apply_direction(model, images01, invert_each(model, images01), delta, betas)


@torch.no_grad()
def spatial_edit(model: EditModel, images01: torch.Tensor, target: Spatial,
                 betas: float | Sequence[float] = SPATIAL_DEFAULT_BETA,
                 pivot: Spatial | None = None) -> EditBatch:
    """Spatial edit of B photos toward a target mask / sketch / 3DMM code, at every beta.

    Args:
        model: the loaded inference models; `target` is of its modality.
        images01: (B, 3, H, W) FFHQ-aligned RGB in [0, 1].
        target: the wanted condition (one for every photo, or one per photo).
        betas: one strength or several (the paper uses 1); 0 gives the e4e reconstruction.
        pivot: the photos' current condition; None = annotate them (the paper's choice).
    """
    betas = check_betas(betas)
    images01 = check_images(images01)
    f_img = image_embeddings(model, images01)  # (B, 512)
    s_target = condition_embeddings(model, images01, target, "target conditions")
    s_pivot = condition_embeddings(model, images01, pivot, "pivot conditions")
    delta = spatial_direction(model, f_img, s_target, s_pivot)
    return apply_direction(model, images01, invert_each(model, images01), delta, betas)
