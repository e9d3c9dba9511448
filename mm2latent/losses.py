"""Training losses: MappingNet latent regression and the spatial autoencoders' reconstruction."""

from __future__ import annotations

import torch
from torch import nn

DISTANCES = ("mse", "l1")


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} has shape {tuple(a.shape)} but {names[1]} has {tuple(b.shape)}; "
            "they must match."
        )


def mapping_loss(
    w_hat: torch.Tensor, w: torch.Tensor, cosine_weight: float = 10.0, distance: str = "mse"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MappingNet loss = mean((w - w_hat)^2) + cosine_weight * mean(1 - cos(w, w_hat)).

    The cosine is taken over the last dimension (w_dim), so a w+ target (B, num_ws, w_dim)
    contributes one cosine per row; both terms are averaged over every element / row.

    Args:
        w_hat: predicted latents (B, w_dim) or (B, num_ws, w_dim).
        w: target latents of the same shape.
        cosine_weight: weight of the cosine term; 0 = distance term only.
        distance: "mse" (squared error, default) or "l1" (absolute error; the authors'
            checkpoint names, e.g. "loss-l1=0.2001-cos=0.2274", suggest they logged L1).

    Returns:
        (total, {"distance": ..., "cosine": ...}) with scalar tensors; parts are unweighted.
    """
    _check_same_shape(w_hat, w, ("w_hat", "w"))
    if distance not in DISTANCES:
        raise ValueError(f"distance={distance!r}; choose one of {', '.join(DISTANCES)}.")
    diff = w - w_hat
    dist = diff.square().mean() if distance == "mse" else diff.abs().mean()
    cosine = (1.0 - nn.functional.cosine_similarity(w, w_hat, dim=-1)).mean()
    total = dist + cosine_weight * cosine
    return total, {"distance": dist.detach(), "cosine": cosine.detach()}


def mask_reconstruction_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between a mask reconstruction and its input (both (B, C, H, W)).

    Args:
        recon: Sigmoid output of the mask autoencoder.
        target: the network input (one-hot channels or grey levels, see mask_to_input).
    """
    _check_same_shape(recon, target, ("recon", "target"))
    return nn.functional.mse_loss(recon, target)


def sketch_reconstruction_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits between sketch logits and the {0, 1} input sketch.

    One logit per pixel is the two-class cross-entropy the authors used with two output
    channels, with logit = l_stroke - l_background.

    Args:
        logits: (B, 1, H, W) raw decoder output.
        target: (B, 1, H, W) input sketch in {0, 1}.
    """
    _check_same_shape(logits, target, ("logits", "target"))
    return nn.functional.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
