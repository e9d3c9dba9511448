"""FFHQ alignment math on given landmark coordinates (no landmark detector needed)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from mm2latent.alignment import align_face, check_looks_aligned, detect_landmarks, ffhq_quad
from mm2latent_core.errors import ConfigError


def _landmarks(eye_left, eye_right, mouth_left, mouth_right) -> np.ndarray:
    """68 points whose eye means and outer-mouth corners are the given ones."""
    points = np.zeros((68, 2))
    points[36:42] = eye_left
    points[42:48] = eye_right
    points[48], points[54] = mouth_left, mouth_right
    return points


UPRIGHT = _landmarks((40, 50), (60, 50), (45, 70), (55, 70))


def test_upright_face_gives_the_recipes_square():
    # eye_to_eye (20, 0), eye_to_mouth (0, 20): x = (20,0) - (-20,0) = (40,0) scaled to
    # max(2*20, 1.8*20) = 40; y = (0, 40); centre = eye_avg + 0.1 eye_to_mouth = (50, 52).
    crop = ffhq_quad(UPRIGHT)
    assert np.allclose(crop.quad, [[10, 12], [10, 92], [90, 92], [90, 12]])
    assert crop.size == pytest.approx(80)


def test_a_long_face_is_sized_by_eye_to_mouth():
    crop = ffhq_quad(_landmarks((45, 50), (55, 50), (50, 100), (50, 100)))  # e2e 10, e2m 50
    assert crop.size == pytest.approx(2 * 1.8 * 50)


def test_quad_rotates_with_the_face():
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([50.0, 60.0])
    rotated = (UPRIGHT - centre) @ rotation.T + centre
    expected = (ffhq_quad(UPRIGHT).quad - centre) @ rotation.T + centre
    assert np.allclose(ffhq_quad(rotated).quad, expected)


def _dotted_photo(height: int, width: int, landmarks: np.ndarray) -> np.ndarray:
    """A grey photo with a 3x3 red dot on the left eye and a green one on the mouth centre."""
    photo = np.full((height, width, 3), 90, np.uint8)
    for point, colour in ((landmarks[36:42].mean(0), (255, 0, 0)),
                          ((landmarks[48] + landmarks[54]) / 2, (0, 255, 0))):
        x, y = np.round(point).astype(int)
        photo[y - 1:y + 2, x - 1:x + 2] = colour
    return photo


def _centroid(image: np.ndarray, channel: int) -> np.ndarray:
    other = [c for c in range(3) if c != channel]
    weight = np.clip(image[..., channel].astype(float) - image[..., other].astype(float).max(-1), 0, None)
    ys, xs = np.mgrid[:image.shape[0], :image.shape[1]]
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


def test_align_places_the_eye_and_mouth_where_the_quad_says():
    photo = _dotted_photo(150, 120, UPRIGHT)
    aligned = align_face(photo, UPRIGHT, 64)
    assert aligned.shape == (64, 64, 3) and aligned.dtype == np.uint8
    # photo point p lands at (p - quad[0]) / 80 * 64 - 0.5 in output pixel indices
    assert np.allclose(_centroid(aligned, 0), (np.array([40, 50]) - [10, 12]) / 80 * 64 - 0.5, atol=0.3)
    assert np.allclose(_centroid(aligned, 1), (np.array([50, 70]) - [10, 12]) / 80 * 64 - 0.5, atol=0.3)


def test_a_turned_photo_aligns_to_the_same_crop():
    photo = _dotted_photo(150, 120, UPRIGHT)
    turned = np.ascontiguousarray(np.rot90(photo))  # counter-clockwise: (x, y) -> (y, W - 1 - x)
    turned_landmarks = np.stack([UPRIGHT[:, 1], 120 - 1 - UPRIGHT[:, 0]], axis=1)
    a, b = align_face(photo, UPRIGHT, 32), align_face(turned, turned_landmarks, 32)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_a_large_photo_is_pre_shrunk_and_still_aligned():
    big = UPRIGHT * 10  # an 800 px crop into 64 px: shrunk by 6 first
    photo = np.kron(_dotted_photo(150, 120, UPRIGHT), np.ones((10, 10, 1), np.uint8))
    aligned = align_face(photo, big + 4.5, 64)  # centres of the 10x10 blocks
    assert np.allclose(_centroid(aligned, 0), (np.array([40, 50]) - [10, 12]) / 80 * 64 - 0.5, atol=0.5)


@pytest.mark.parametrize("landmarks, message", [(np.zeros((5, 2)), r"\(68, 2\)"),
                                                (np.full((68, 2), np.nan), "finite"),
                                                (np.zeros((68, 2)), "degenerate")])
def test_bad_landmarks_are_refused(landmarks, message):
    with pytest.raises(ConfigError, match=message):
        ffhq_quad(landmarks)


def test_unaligned_looking_photo_and_missing_detector_say_how_to_fix(monkeypatch):
    with pytest.raises(ConfigError, match=r"640x480 px, not square.*--align.*mm2latent\[align\]"):
        check_looks_aligned(480, 640)
    check_looks_aligned(64, 64)
    real_import = builtins.__import__

    def no_face_alignment(name, *args, **kwargs):
        if name == "face_alignment":
            raise ImportError("No module named 'face_alignment'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_face_alignment)
    with pytest.raises(ConfigError, match=r"face-alignment"):
        detect_landmarks(np.zeros((64, 64, 3), np.uint8))
