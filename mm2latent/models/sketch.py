"""Sketches as OpenCV Canny edge maps, the sketch modality of MM2Latent.

Defaults follow the official MM2Latent script (Open-Debin/MM2Latent
`face_parsing/face_rgb2sketch.py`): resize the RGB image to 256 x 256 with `cv2.INTER_LINEAR`,
then `cv2.Canny(image, 100, 200, L2gradient=True)` straight on the 3-channel image (OpenCV
then takes, per pixel, the channel with the largest gradient), no blur, no dilation. 100/200 is
the usual 1:2 hysteresis pair from OpenCV's Canny tutorial: strong face contours (jaw, hair
line, eyes, lips) pass 200, their continuations are kept down to 100, and skin texture and JPEG
noise stay below. The options for grey conversion, Gaussian blur and dilation exist for
ablations; they are off by default so sketches match the released data.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from mm2latent.errors import ConfigError

_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}


@dataclass(frozen=True)
class SketchCfg:
    """Canny sketch extraction; defaults = the official MM2Latent script."""

    resolution: int | None = 256  # output H = W, pixels; None = keep the input size
    interpolation: str = "linear"  # resize filter: "linear" (official), "area" or "nearest"
    grey: bool = False  # True = cv2.COLOR_RGB2GRAY first; False = Canny on RGB (official)
    blur_ksize: int = 0  # Gaussian blur kernel side, pixels, odd; 0 = no blur (official)
    blur_sigma: float = 0.0  # Gaussian sigma, pixels; 0 = OpenCV derives it from blur_ksize
    low_threshold: float = 100.0  # Canny hysteresis low threshold, gradient magnitude units
    high_threshold: float = 200.0  # Canny hysteresis high threshold, gradient magnitude units
    aperture: int = 3  # Sobel aperture size: 3, 5 or 7
    l2_gradient: bool = True  # True = sqrt(gx^2 + gy^2) (official); False = |gx| + |gy|
    dilation: int = 0  # thicken edges by this radius with a (2r+1)^2 square, pixels; 0 = none

    def __post_init__(self) -> None:
        problems = []
        if self.resolution is not None and self.resolution < 8:
            problems.append(f"resolution must be >= 8 or None, got {self.resolution}")
        if self.interpolation not in _INTERPOLATION:
            problems.append(f"interpolation must be one of {sorted(_INTERPOLATION)}, "
                            f"got {self.interpolation!r}")
        if self.blur_ksize < 0 or (self.blur_ksize and self.blur_ksize % 2 == 0):
            problems.append(f"blur_ksize must be 0 or odd and positive, got {self.blur_ksize}")
        if not 0 <= self.low_threshold <= self.high_threshold:
            problems.append(f"need 0 <= low_threshold <= high_threshold, got "
                            f"{self.low_threshold}, {self.high_threshold}")
        if self.aperture not in (3, 5, 7):
            problems.append(f"aperture must be 3, 5 or 7, got {self.aperture}")
        if self.dilation < 0:
            problems.append(f"dilation must be >= 0, got {self.dilation}")
        if problems:
            raise ConfigError("SketchCfg: " + "; ".join(problems))


def _to_uint8_nhwc(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB from uint8 NHWC numpy or float NCHW [0, 1] torch input."""
    if isinstance(images, torch.Tensor):
        if not images.is_floating_point() or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError("tensor images must be float (B, 3, H, W) RGB in [0, 1], got "
                             f"{images.dtype} {tuple(images.shape)}")
        # round to the nearest 8-bit level, as saving the image to PNG would
        pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"numpy images must be uint8 (B, H, W, 3) RGB, got dtype {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"numpy images must be (B, H, W, 3); got {images.ndim} dims "
                         f"{images.shape}")
    if images.shape[3] != 3:
        raise ValueError(f"numpy images dim 3 (channels) must be 3 (RGB), got {images.shape[3]}")
    return images


def _sketch_one(image: np.ndarray, cfg: SketchCfg) -> np.ndarray:
    """(R, R) uint8 {0, 255} edges of one (H, W, 3) uint8 RGB image."""
    if cfg.resolution is not None and image.shape[:2] != (cfg.resolution, cfg.resolution):
        image = cv2.resize(image, (cfg.resolution, cfg.resolution),
                           interpolation=_INTERPOLATION[cfg.interpolation])
    if cfg.grey:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # (R, R)
    if cfg.blur_ksize:
        image = cv2.GaussianBlur(image, (cfg.blur_ksize, cfg.blur_ksize), cfg.blur_sigma)
    edges = cv2.Canny(np.ascontiguousarray(image), cfg.low_threshold, cfg.high_threshold,
                      apertureSize=cfg.aperture, L2gradient=cfg.l2_gradient)
    if cfg.dilation:
        kernel = np.ones((2 * cfg.dilation + 1, 2 * cfg.dilation + 1), np.uint8)
        edges = cv2.dilate(edges, kernel)
    return edges


def extract_sketch(images: np.ndarray | torch.Tensor, cfg: SketchCfg | None = None
                   ) -> np.ndarray | torch.Tensor:
    """Canny edge maps (B, R, R) uint8 with values 0 and 255 (edge); deterministic.

    Args:
        images: uint8 RGB numpy (B, H, W, 3), or a float torch tensor (B, 3, H, W) in [0, 1].
        cfg: extraction settings; None = the official MM2Latent setup.

    Returns:
        numpy uint8 for numpy input; a uint8 tensor on the input's device for tensor input.
    """
    cfg = cfg or SketchCfg()
    batch = _to_uint8_nhwc(images)
    if len(batch) == 0:
        side = cfg.resolution or 0
        edges = np.zeros((0, side or batch.shape[1], side or batch.shape[2]), np.uint8)
    else:
        edges = np.stack([_sketch_one(image, cfg) for image in batch])  # (B, R, R)
    if isinstance(images, torch.Tensor):
        return torch.from_numpy(edges).to(images.device)
    return edges
