"""Fixed alignment of FFHQ-aligned faces to facer's `farl/celebm/448` template.

What facer does (FacePerceiver/facer `transform.py`, `face_parsing/farl.py`): a RetinaFace
detector gives 5 landmarks (eyes, nose tip, mouth corners); `get_face_align_matrix_celebm`
turns them into the FFHQ/CelebA-HQ crop quad (centre = eye midpoint + 0.1 x eye-to-mouth, half
side = max(2 x eye distance, 1.8 x eye-to-mouth distance)) and fits the similarity transform
taking that quad's corners to (0, 0), (448, 0), (448, 448), (0, 448). The image is warped with
`grid_sample(bilinear, align_corners=False)` (warp_factor 0: no tanh warp, a plain crop), the
model's logits are warped back the same way, and the argmax is taken at the image size.
This mirrors training: FaRL trained `celebm` on whole CelebA-HQ images (identity align matrix),
which were cut out by that same quad recipe.

Why no detector here: a StyleGAN2-FFHQ image (and any FFHQ- or CelebA-HQ-aligned photo) IS the
output of that quad crop, so the quad facer would rebuild from landmarks is the image border
(up to landmark noise). The template transform is therefore a fixed scale by 448 / image side,
which this module builds directly; `face_scale` covers images whose face is smaller or larger
than FFHQ's. Coordinates follow facer: pixel edges, (0, 0) is the top-left corner of the
top-left pixel, pixel centres sit at +0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mm2latent_core.errors import ConfigError


@dataclass(frozen=True)
class FfhqAlignCfg:
    """Fixed FFHQ-to-template alignment for facer's celebm parser."""

    template_size: int = 448  # side of facer's square template, pixels
    face_scale: float = 1.0  # FFHQ crop side / image side; 1.0 = the image is FFHQ-aligned

    def __post_init__(self) -> None:
        if self.template_size <= 0 or self.face_scale <= 0:
            raise ConfigError(f"FfhqAlignCfg needs template_size > 0 and face_scale > 0, got "
                              f"{self.template_size}, {self.face_scale}")


def ffhq_template_matrix(height: int, width: int, cfg: FfhqAlignCfg) -> torch.Tensor:
    """(3, 3) similarity taking image coordinates to template coordinates for an FFHQ-aligned image.

    Args:
        height: image height, pixels; must equal width (FFHQ crops are square).
        width: image width, pixels.
        cfg: template size and face scale.
    """
    if height != width:
        raise ValueError(f"FFHQ-aligned images are square; got height {height} != width {width}")
    crop_side = width * cfg.face_scale  # the FFHQ quad's side in image pixels
    scale = cfg.template_size / crop_side
    # centre of the image goes to the centre of the template
    shift = cfg.template_size / 2 - scale * width / 2
    return torch.tensor([[scale, 0.0, shift], [0.0, scale, shift], [0.0, 0.0, 1.0]],
                        dtype=torch.float64)


def _sample(src: torch.Tensor, dst_to_src: torch.Tensor, dst_hw: tuple[int, int],
            src_extent: tuple[float, float]) -> torch.Tensor:
    """grid_sample `src` at the pixel centres of a (dst_h, dst_w) grid mapped by `dst_to_src`.

    `src_extent` = (width, height) of the coordinate frame `src` covers, whatever its resolution.
    """
    dst_h, dst_w = dst_hw
    ys = torch.arange(dst_h, dtype=torch.float64) + 0.5
    xs = torch.arange(dst_w, dtype=torch.float64) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (dst_h, dst_w) each
    pts = torch.stack([xx, yy, torch.ones_like(xx)], dim=-1)  # (dst_h, dst_w, 3)
    mapped = pts @ dst_to_src.to(torch.float64).T  # (dst_h, dst_w, 3)
    extent = torch.tensor(src_extent, dtype=torch.float64)
    grid = mapped[..., :2] / mapped[..., 2:] / extent * 2 - 1  # (dst_h, dst_w, 2) in [-1, 1]
    grid = grid.to(device=src.device, dtype=src.dtype)
    grid = grid.unsqueeze(0).expand(src.shape[0], -1, -1, -1)  # (B, dst_h, dst_w, 2)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warp_to_template(images: torch.Tensor, matrix: torch.Tensor,
                     template_size: int) -> torch.Tensor:
    """(B, C, T, T) template crop of (B, C, H, W) images; `matrix` maps image to template coords.

    Args:
        images: (B, C, H, W) float images.
        matrix: (3, 3) image-to-template similarity, e.g. from `ffhq_template_matrix`.
        template_size: T, the template side in pixels.
    """
    h, w = images.shape[2:]
    template_to_image = torch.linalg.inv(matrix.to(torch.float64))
    return _sample(images, template_to_image, (template_size, template_size), (float(w), float(h)))


def warp_from_template(maps: torch.Tensor, matrix: torch.Tensor, template_size: int,
                       out_hw: tuple[int, int]) -> torch.Tensor:
    """(B, C, H, W) image-frame copy of (B, C, h, w) maps that cover the T x T template.

    Pixels outside the template get 0 in every channel (so background wins the argmax ties), as
    with facer's inverse warp. `maps` may have any resolution (FaRL heads emit 512 for T = 448).

    Args:
        maps: (B, C, h, w) logits or images covering the whole template.
        matrix: (3, 3) image-to-template similarity.
        template_size: T, the template side in pixels.
        out_hw: (H, W) of the image frame.
    """
    return _sample(maps, matrix, out_hw, (float(template_size), float(template_size)))
