"""FFHQ alignment of in-the-wild photos: 68 landmarks -> oriented square -> crop -> resize.

The recipe is NVIDIA's FFHQ one (ffhq-dataset `recreate_aligned_images`): eye centres are the
means of landmarks 36-41 and 42-47, the mouth centre is the middle of the outer-mouth corners
48 and 54; the square's half side is max(2 |eye_to_eye|, 1.8 |eye_to_mouth|), oriented so that
its x axis is eye_to_eye minus the eye_to_mouth vector turned by 90 degrees, centred at
eye_avg + 0.1 eye_to_mouth. Sampling: an integer pre-shrink (area filter) when the square is
over twice the output size, a bilinear warp to 4x the output size, then an area resize, as the
recipe does with its 4096 px transform. Outside the photo we reflect the border as the recipe
does, but skip its extra blur of that padding (it only touches pixels outside the photo).

Landmarks come from the optional `face-alignment` package (install `mm2latent[align]`); the
math here takes any (68, 2) landmark array, so it is tested on given coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mm2latent_core.errors import ConfigError

NUM_LANDMARKS = 68  # iBUG 300-W layout (dlib, face-alignment)
LEFT_EYE = slice(36, 42)
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT, MOUTH_RIGHT = 48, 54  # outer-mouth corners
SUPERSAMPLE = 4  # warp at 4x the output side, then area-resize (the recipe's 4096 for 1024)
ALIGN_EXTRA = "pip install 'mm2latent[align]'  (installs face-alignment; its weights download on first use)"


@dataclass(frozen=True)
class FfhqQuad:
    """The oriented crop square in photo pixel coordinates (x right, y down)."""

    quad: np.ndarray  # (4, 2) corners: top-left, bottom-left, bottom-right, top-right
    size: float       # side length in photo pixels


def check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(68, 2) float64 landmarks; ConfigError for another shape or non-finite values."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2) or not np.isfinite(points).all():
        raise ConfigError(f"landmarks must be a finite ({NUM_LANDMARKS}, 2) array of (x, y) pixel "
                          f"coordinates in the iBUG 68-point order, got shape {points.shape}.")
    return points


def ffhq_quad(landmarks: np.ndarray) -> FfhqQuad:
    """The FFHQ crop square of a face from its 68 landmarks."""
    points = check_landmarks(landmarks)
    eye_left, eye_right = points[LEFT_EYE].mean(0), points[RIGHT_EYE].mean(0)
    eye_avg, eye_to_eye = (eye_left + eye_right) / 2, eye_right - eye_left
    mouth_avg = (points[MOUTH_LEFT] + points[MOUTH_RIGHT]) / 2
    eye_to_mouth = mouth_avg - eye_avg
    # x axis: eye_to_eye combined with eye_to_mouth turned by -90 degrees (y down), so a
    # tilted face gives a level crop.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    norm = math.hypot(*x)
    if norm == 0:
        raise ConfigError("landmarks are degenerate (eyes and mouth coincide); not a face.")
    x *= max(math.hypot(*eye_to_eye) * 2.0, math.hypot(*eye_to_mouth) * 1.8) / norm
    y = np.array([-x[1], x[0]])  # x turned by +90 degrees: points from the eyes to the mouth
    centre = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])  # (4, 2)
    return FfhqQuad(quad=quad, size=2 * math.hypot(*x))


def _warp_matrix(quad: np.ndarray, side: int) -> np.ndarray:
    """(2, 3) map from output pixel (u, v) to photo coordinates, pixel centres at integers."""
    x_axis, y_axis = quad[3] - quad[0], quad[1] - quad[0]  # (2,) each: the square's sides
    origin = quad[0] + 0.5 * (x_axis + y_axis) / side  # output pixel centres sit at +0.5
    return np.stack([x_axis / side, y_axis / side, origin], axis=1)  # (2, 3)


def align_face(image: np.ndarray, landmarks: np.ndarray, output_size: int) -> np.ndarray:
    """(S, S, 3) uint8 FFHQ-aligned crop of an (H, W, 3) uint8 RGB photo.

    Args:
        image: the photo.
        landmarks: (68, 2) (x, y) pixel coordinates of its face.
        output_size: side of the aligned image (the generator's resolution).
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConfigError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}.")
    crop = ffhq_quad(landmarks)
    quad = crop.quad.copy()
    shrink = int(math.floor(crop.size / output_size * 0.5))
    if shrink > 1:  # area pre-shrink keeps the bilinear warp from aliasing on large photos
        h, w = image.shape[:2]
        image = cv2.resize(image, (round(w / shrink), round(h / shrink)), interpolation=cv2.INTER_AREA)
        quad = (quad + 0.5) / shrink - 0.5  # pixel-centre coordinates in the shrunk photo
    side = output_size * SUPERSAMPLE
    warped = cv2.warpAffine(image, _warp_matrix(quad, side), (side, side),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT_101)
    return cv2.resize(warped, (output_size, output_size), interpolation=cv2.INTER_AREA)


def detect_landmarks(image: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(68, 2) landmarks of the largest face in an (H, W, 3) uint8 RGB photo (face-alignment)."""
    try:
        import face_alignment
    except ImportError as e:
        raise ConfigError(f"--align needs the optional landmark detector: {ALIGN_EXTRA}.") from e
    detector = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                            face_detector="sfd")
    faces = detector.get_landmarks_from_image(image)
    if not faces:
        raise ConfigError("no face found in the photo; give a photo with one visible face.")
    return max(faces, key=lambda f: np.ptp(f[:, 0]) * np.ptp(f[:, 1]))[:, :2]  # largest face


def check_looks_aligned(height: int, width: int, what: str = "photo") -> None:
    """ConfigError pointing to --align when a photo cannot be an FFHQ-aligned crop (not square)."""
    if height != width:
        raise ConfigError(f"{what} does not look FFHQ-aligned (it is {width}x{height} px, not "
                          "square). Edits need a square crop aligned as FFHQ's (eyes and mouth at "
                          "fixed places). Fix: pass --align to align it from 68 landmarks "
                          f"({ALIGN_EXTRA}), or align it yourself.")
