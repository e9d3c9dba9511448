"""Loaders for the authors' released MM2Latent models (Lightning `.ckpt` files).

* Mask autoencoder `models/greyseg_encoder/used_epoch495_train0p00124_val0p00114.ckpt` and
  sketch autoencoder `models/sketch_encoder/used_epoch458_train0p11285_val0p1277.ckpt`
  (Open-Debin/MM2Latent at 1d381a2): their LightningModules hold the networks as `encoder` and
  `decoder`, which `arch="official"` rebuilds key for key (`autoencoders_official.py`).
* MappingNets (`epoch=267-...ckpt` text+mask, `epoch=472-...ckpt` text+sketch): see
  `mapping_net.load_official_mapping_net`.

Loading is strict: every key of the architecture must be present with its shape, and a key
left over is an error naming it, so a file of another network never loads as a near miss. The
one exception is buffers of the authors' loss modules (`ssim_loss`, `ms_ssim_loss` in the mask
module; some pytorch_msssim versions register a window buffer), which carry no weights.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mm2latent.checkpoint_io import load_state_checked
from mm2latent_core.errors import CheckpointError
from mm2latent.models.autoencoders import (OFFICIAL_MASK_CFG, OFFICIAL_SKETCH_CFG, AutoencoderCfg,
                                           SpatialAutoencoder)
from mm2latent.models.lightning_checkpoint import read_lightning_checkpoint

logger = logging.getLogger(__name__)

# Submodules of the authors' LightningModules that are losses, not parts of the network.
_LOSS_MODULE_PREFIXES = ("ssim_loss.", "ms_ssim_loss.", "mse_loss.", "l1_loss.", "criterion.")


def load_official_autoencoder(path: str | os.PathLike[str], cfg: AutoencoderCfg) -> SpatialAutoencoder:
    """An authors' autoencoder `.ckpt` in `cfg`'s (official) layout, eval mode.

    Args:
        path: local path or fsspec URL of the Lightning checkpoint.
        cfg: an `arch="official"` config, e.g. OFFICIAL_MASK_CFG.
    """
    if cfg.arch != "official":
        raise CheckpointError(path, f"the authors' files need arch='official', got {cfg.arch!r}.",
                              "Use the preset 'mask_official' or 'sketch_official' "
                              "(mm2latent.presets.AUTOENCODER_PRESETS).")
    ckpt = read_lightning_checkpoint(path)
    state = {k: v for k, v in ckpt.state_dict.items() if not k.startswith(_LOSS_MODULE_PREFIXES)}
    losses = sorted(set(ckpt.state_dict) - set(state))
    if losses:
        logger.info("%s: skipped loss-module buffers %s", path, losses)
    net = SpatialAutoencoder(cfg)
    leftover = load_state_checked(net, state, path, allowed_extra=lambda key: True)  # raised below
    if leftover:
        raise CheckpointError(
            path, f"{len(leftover)} key(s) are not part of the authors' {cfg.kind} autoencoder: "
                  f"{', '.join(sorted(leftover)[:8])}.",
            f"Is this the {cfg.kind} autoencoder file? The mask and sketch files differ.")
    logger.info("%s: authors' %s autoencoder (epoch %s, Lightning %s)", path, cfg.kind,
                ckpt.epoch, ckpt.lightning_version)
    return net.eval()


def load_official_mask_autoencoder(path: Path) -> SpatialAutoencoder:
    """The authors' grey-level mask autoencoder (registry format `mm2latent-mask-ae-ckpt`)."""
    return load_official_autoencoder(path, OFFICIAL_MASK_CFG)


def load_official_sketch_autoencoder(path: Path) -> SpatialAutoencoder:
    """The authors' sketch autoencoder (registry format `mm2latent-sketch-ae-ckpt`)."""
    return load_official_autoencoder(path, OFFICIAL_SKETCH_CFG)
