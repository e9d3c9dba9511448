"""Fabricate MM2Latent MappingNet checkpoints in the authors' PyTorch Lightning layout.

The authors' `BiPathModel` (a LightningModule) holds `map_fn = BiPathMappingNet(...)` whose
`net` is Sequential(BatchNorm1d(1024), Dropout(), EqualizedLinear(1024, 512), LeakyReLU,
11 x [EqualizedLinear(512, 512), LeakyReLU]); EqualizedLinear keeps its weight in a child
module (`.weight.weight`) and its bias directly (`.bias`). Lightning saves
{"state_dict": ..., "epoch", "global_step", "pytorch-lightning_version", ...} with torch.save.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEXT_DIM = 512
SPATIAL_DIM = 512
FEATURES = 512
N_LINEAR = 12


def official_mapping_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the authors' key names and shapes (text+mask / text+sketch nets)."""
    gen = torch.Generator().manual_seed(seed)
    in_dim = TEXT_DIM + SPATIAL_DIM
    state = {
        "map_fn.net.0.weight": 1 + 0.1 * torch.randn(in_dim, generator=gen),
        "map_fn.net.0.bias": 0.1 * torch.randn(in_dim, generator=gen),
        "map_fn.net.0.running_mean": 0.05 * torch.randn(in_dim, generator=gen),
        "map_fn.net.0.running_var": 0.5 + torch.rand(in_dim, generator=gen),
        "map_fn.net.0.num_batches_tracked": torch.tensor(12345),
    }
    widths = [in_dim] + [FEATURES] * N_LINEAR
    for i in range(N_LINEAR):
        idx = 2 + 2 * i  # BN at 0, Dropout at 1, then Linear/LeakyReLU pairs
        weight = torch.randn(widths[i + 1], widths[i], generator=gen)
        state[f"map_fn.net.{idx}.weight.weight"] = weight
        state[f"map_fn.net.{idx}.bias"] = 0.1 * torch.randn(widths[i + 1], generator=gen)
    return state


def write_lightning_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """torch.save a Lightning-style checkpoint holding `state` as its state_dict."""
    torch.save(
        {
            "epoch": 267,
            "global_step": 100000,
            "pytorch-lightning_version": "1.9.0",
            "state_dict": state,
            "loops": {},
            "callbacks": {},
            "optimizer_states": [],
            "lr_schedulers": [],
        },
        path,
    )
    return path
