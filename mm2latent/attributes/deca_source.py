"""Head pose, jaw opening and expression strength from each sample's stored DECA code.

The stored `flame` vector is [shape, expression, pose, camera] (mm2latent.models.deca.FLAME159_ORDER;
100 + 50 + 6 + 3 for DECA). DECA's pose is 6 numbers: the global head rotation as an axis-angle
(3) then the jaw rotation as an axis-angle (3): yfeng95/DECA `decalib/models/FLAME.py` builds
FLAME's full pose as [pose[:, :3], neck, pose[:, 3:], eyes].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mm2latent.attributes.spec import (AttributeBatch, AttributeColumn, AttributeSource,
                                       PrepareInputs, Prepared)
from mm2latent_core.errors import ConfigError


def rotation_matrices(axis_angle: np.ndarray) -> np.ndarray:
    """(B, 3, 3) rotation matrices of axis-angle vectors (B, 3) (Rodrigues' formula)."""
    angle = np.linalg.norm(axis_angle, axis=1, keepdims=True)  # (B, 1)
    axis = axis_angle / np.maximum(angle, 1e-12)  # (B, 3); any axis for a zero angle
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=1).reshape(-1, 3, 3)  # (B, 3, 3)
    s, c = np.sin(angle)[:, :, None], np.cos(angle)[:, :, None]  # (B, 1, 1)
    return np.eye(3)[None] + s * k + (1 - c) * (k @ k)


def yaw_pitch_roll_deg(axis_angle: np.ndarray) -> np.ndarray:
    """(B, 3) yaw, pitch, roll in degrees of head rotations given as axis-angles (B, 3).

    FLAME's frame: x to the image's right, y up, z toward the camera. R = Rz(roll) Ry(yaw)
    Rx(pitch), so yaw turns the head about the vertical axis (DECA's own landmark code reads the
    same y angle), pitch nods it about x, roll tilts it about the viewing axis.
    """
    r = rotation_matrices(axis_angle.astype(np.float64))  # (B, 3, 3)
    yaw = np.arctan2(-r[:, 2, 0], np.hypot(r[:, 0, 0], r[:, 1, 0]))
    pitch = np.arctan2(r[:, 2, 1], r[:, 2, 2])
    roll = np.arctan2(r[:, 1, 0], r[:, 0, 0])
    return np.degrees(np.stack([yaw, pitch, roll], axis=1))  # (B, 3)


def prepare(inputs: PrepareInputs) -> Prepared:
    """The code layout (slice offsets) of the preset's DECA."""
    cfg = inputs.preset.deca
    layout = {"n_shape": cfg.n_shape, "n_exp": cfg.n_exp, "n_pose": cfg.n_pose}
    if cfg.n_pose != 6:
        raise ConfigError(f"the deca attributes need DECA's 6 pose numbers, the preset has "
                          f"{cfg.n_pose}; use a preset with the official DECA layout.")
    return Prepared(context=layout, producer=layout)


def compute(layout: dict[str, int], batch: AttributeBatch) -> dict[str, np.ndarray]:
    """Yaw, pitch, roll, jaw opening (degrees) and the L2 norm of the expression code."""
    code = np.asarray(batch.values["flame"], dtype=np.float64)  # (B, 159)
    exp0 = layout["n_shape"]
    pose0 = exp0 + layout["n_exp"]
    expression = code[:, exp0:pose0]  # (B, 50)
    head, jaw = code[:, pose0:pose0 + 3], code[:, pose0 + 3:pose0 + 6]  # (B, 3) each
    angles = yaw_pitch_roll_deg(head)  # (B, 3)
    return {"yaw_deg": angles[:, 0], "pitch_deg": angles[:, 1], "roll_deg": angles[:, 2],
            "jaw_open_deg": np.degrees(jaw[:, 0]),
            "expression_l2": np.linalg.norm(expression, axis=1)}


COLUMNS = (
    AttributeColumn("yaw_deg", "degrees", "head turn about the vertical axis (global pose, "
                    "R = Rz(roll) Ry(yaw) Rx(pitch))"),
    AttributeColumn("pitch_deg", "degrees", "head nod about the horizontal image axis"),
    AttributeColumn("roll_deg", "degrees", "head tilt about the viewing axis"),
    AttributeColumn("jaw_open_deg", "degrees", "jaw rotation about the horizontal axis (the x "
                    "component of DECA's jaw axis-angle; larger = mouth more open)"),
    AttributeColumn("expression_l2", "FLAME expression units", "L2 norm of the 50 expression "
                    "coefficients (0 = neutral)"),
)

SOURCE = AttributeSource(
    name="deca", version="1", columns=COLUMNS, compute=compute, vectors=("flame",),
    prepare=prepare,
    description="head pose, jaw opening and expression strength from the stored DECA code")
