"""Edit sessions: a photo's inversion and the current direction, cached so beta re-renders cheaply."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from mm2latent.editing import (condition_embeddings, edit_latents, image_embeddings, invert_each,
                               spatial_direction, synthesize_each, text_direction)
from mm2latent_core.errors import ConfigError
from mm2latent.interactive.models import ModelSet
from mm2latent.interactive.provenance import SpatialDirection, TextDirection


@dataclass
class EditSession:
    """One uploaded photo: its e4e w+ and, once chosen, the edit direction."""

    id: str
    photo01: torch.Tensor          # (1, 3, H, W) float RGB in [0, 1]
    photo_sha256: str
    inversion: torch.Tensor        # (1, num_ws, w_dim) e4e w+
    reconstruction: np.ndarray     # (R, R, 3) uint8 synthesis of the inversion
    delta: torch.Tensor | None = None  # (1, w_dim) direction, None before one is chosen
    direction: TextDirection | SpatialDirection | None = None  # what made `delta` (provenance)


def start_session(models: ModelSet, photo01: torch.Tensor, photo_sha256: str) -> EditSession:
    """Invert the photo once (e4e, as `mm2latent edit` does) and keep the result."""
    editor = models.editor
    inversion = invert_each(editor, photo01)  # (1, num_ws, w_dim)
    return EditSession(uuid.uuid4().hex, photo01, photo_sha256, inversion,
                       synthesize_each(editor, inversion)[0].numpy())


def set_text_direction(models: ModelSet, session: EditSession, target: str, pivot: str) -> None:
    """delta = Net(f_target, s) - Net(f_pivot, s), s = the photo's own annotation (mask model)."""
    editor = models.editor
    space = condition_embeddings(editor, session.photo01, None, "spatial conditions")
    session.delta = text_direction(editor, target, pivot, space)
    session.direction = TextDirection(editor.modality, target, pivot)


def set_spatial_direction(models: ModelSet, session: EditSession, modality: str,
                          target: np.ndarray, target_sha256: str) -> None:
    """delta = Net(f_img, s_target) - Net(f_img, s_pivot), pivot = the photo's own annotation."""
    model = models.model(modality)
    f_img = image_embeddings(model, session.photo01)
    s_target = condition_embeddings(model, session.photo01, target, "target conditions")
    s_pivot = condition_embeddings(model, session.photo01, None, "pivot conditions")
    session.delta = spatial_direction(model, f_img, s_target, s_pivot)
    session.direction = SpatialDirection(modality, target_sha256)


def render(models: ModelSet, session: EditSession, beta: float) -> np.ndarray:
    """(R, R, 3) uint8 edit at `beta` from the cached inversion and direction (no re-inversion)."""
    if session.delta is None:
        raise ConfigError("choose an edit first (target caption, or a target mask / sketch).")
    w_plus = edit_latents(session.inversion, session.delta, [beta])[:, 0]  # (1, num_ws, w_dim)
    return synthesize_each(models.editor, w_plus)[0].numpy()


class SessionCache:
    """The newest `capacity` sessions, thread-safe; older ones are dropped (the page re-uploads)."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity, self._lock, self._items = capacity, threading.Lock(), OrderedDict()

    def put(self, session: EditSession) -> None:
        with self._lock:
            self._items[session.id] = session
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, session_id: str) -> EditSession:
        """The session; ConfigError if it expired or never existed."""
        with self._lock:
            if session_id not in self._items:
                raise ConfigError("this edit session has expired (the server keeps the newest "
                                  f"{self.capacity}); upload the photo again.")
            self._items.move_to_end(session_id)
            return self._items[session_id]
