"""Edit one photo by every edit of a spec: its tar members and manifest vectors."""

from __future__ import annotations

import numpy as np
import torch

from mm2latent.edit_dataset.models import EditModels
from mm2latent.edit_dataset.spec import EditSpec, ResolvedEdit, SpatialEdit
from mm2latent.editing import (condition_embeddings, edit_latents, image_embeddings, invert_each,
                               spatial_direction, synthesize_each, text_direction)
from mm2latent.modalities.codecs import encode_png
from storage.shard_writer import encode_json, encode_npy


def _delta(models: EditModels, photo: torch.Tensor, edit: ResolvedEdit) -> torch.Tensor:
    """(1, w_dim) direction of one edit for one photo."""
    model = models.by_modality[edit.edit.modality]
    own = condition_embeddings(model, photo, edit.condition, "conditions")
    if isinstance(edit.edit, SpatialEdit):
        target = condition_embeddings(model, photo, edit.target, "target conditions")
        return spatial_direction(model, image_embeddings(model, photo), target, own)
    return text_direction(model, edit.edit.target, edit.edit.pivot, own)


@torch.no_grad()
def edit_members(models: EditModels, spec: EditSpec, photo: torch.Tensor,
                 metadata: dict) -> tuple[dict[str, bytes], np.ndarray]:
    """(tar members, flattened inversion w+) of one (1, 3, S, S) photo in [0, 1].

    Members: `png` the photo as read, `w_plus.npy` its e4e inversion, and per edit and beta k
    `<edit>.<k>.png` / `<edit>.<k>.w_plus.npy`; `json` lists the edits and their betas.
    """
    pixels = (photo[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (S, S, 3)
    inversion = invert_each(models.first, photo)  # (1, num_ws, w_dim)
    members = {"png": encode_png(pixels), "w_plus.npy": encode_npy(inversion[0].cpu().numpy())}
    for edit in spec.edits:
        w_plus = edit_latents(inversion, _delta(models, photo, edit), edit.edit.betas)[0]  # (K, n, d)
        images = synthesize_each(models.by_modality[edit.edit.modality], w_plus)  # (K, R, R, 3)
        for k in range(len(edit.edit.betas)):
            members[f"{edit.name}.{k}.png"] = encode_png(images[k].numpy())
            members[f"{edit.name}.{k}.w_plus.npy"] = encode_npy(w_plus[k].cpu().numpy())
    edits = {e.name: {"kind": e.edit.kind, "betas": list(e.edit.betas)} for e in spec.edits}
    members["json"] = encode_json(metadata | {"edits": edits})
    return members, inversion[0].flatten().cpu().numpy()
