"""Loaders for the official FaRL `.pth` and OpenAI CLIP TorchScript `.pt` weights.

Both files use OpenAI CLIP's parameter names, which open_clip's `CLIP` (QuickGELU) reproduces
exactly, so loading is: read the tensors, require every expected key with its shape, cast to
fp32, copy strictly into a ClipEmbedder.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import torch

from mm2latent.checkpoint_io import load_state_checked, read_torch_checkpoint
from mm2latent.errors import CheckpointError
from mm2latent.models.clip_towers import ClipEmbedder, ClipTowerCfg
from storage.fs import is_file
from storage.torch_files import load_torchscript

logger = logging.getLogger(__name__)

# FaRL's pre-training also trained a masked-image-modelling head on the vision tower
# (FaRL network/farl/model.py: lm_transformer, ln_lm, lm_head, mask_token, all attributes of
# VisualTransformer, so stored under `visual.`). It is unused for embeddings.
_FARL_MIM_PATTERN = re.compile(r"^(visual\.)?(lm_transformer\.|ln_lm\.|lm_head\.|mask_token$)")

# Integer attributes OpenAI's TorchScript models carry in their state_dict besides weights.
_OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")

# OpenAI's build_model derives heads as width // 64 for both towers.
_OPENAI_HEAD_WIDTH = 64


def _load_into(embedder: ClipEmbedder, state: Mapping[str, torch.Tensor], path: object,
               known_extra: re.Pattern[str] | None = None) -> ClipEmbedder:
    """Strict checked copy of `state` into embedder.model; only `known_extra` keys may be left over.

    The accepted extras are reported (logged and kept in embedder.extra_keys).
    """
    allowed = None if known_extra is None else (lambda key: known_extra.match(key) is not None)
    extras = load_state_checked(embedder.model, state, path,  # type: ignore[arg-type]
                                allowed_extra=allowed)
    if extras:
        logger.info("%s: ignoring %d FaRL masked-image-modelling key(s) (%s, ...).", path,
                    len(extras), ", ".join(sorted(extras)[:4]))
    embedder.extra_keys = tuple(sorted(extras))
    return embedder.eval()


def load_farl(path: str | os.PathLike[str], cfg: ClipTowerCfg = ClipTowerCfg()) -> ClipEmbedder:
    """Load FaRL-Base-Patch16-LAIONFace20M-ep{16,64}.pth into a frozen fp32 ClipEmbedder.

    The file is {'state_dict': OpenAI-layout tensors (+ optional MIM keys)}; read with
    weights_only=True. Missing or misshaped tensors raise CheckpointError.

    Args:
        path: local path of the .pth file.
        cfg: architecture; the default is FaRL-Base-Patch16 (= CLIP ViT-B/16).
    """
    checkpoint = read_torch_checkpoint(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        found = sorted(map(str, checkpoint))[:8] if isinstance(checkpoint, dict) else \
            type(checkpoint).__name__
        raise CheckpointError(path, f"no 'state_dict' dict at the top level (found {found}).",
                              "Expected a FaRL .pth: {'state_dict': {...}}.")
    return _load_into(ClipEmbedder(cfg), checkpoint["state_dict"], path, _FARL_MIM_PATTERN)


def _read_openai_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Weights of an OpenAI CLIP file: TorchScript archive, else a plain torch state dict."""
    # We only read the archive's tensors and never run its graph: the TorchScript code is
    # traced with fp16 weights and device constants baked in, running it would give a second
    # inference path to keep equal to open_clip's, and fp32 open_clip works on any device.
    if not is_file(os.fspath(path)):
        raise CheckpointError(path, "file does not exist.", "Check the path or download it.")
    try:
        archive = load_torchscript(path)
    except Exception as jit_error:  # not TorchScript: maybe a plain state dict of that layout
        logger.debug("%s: not a TorchScript archive (%s); trying torch.load", path, jit_error)
    else:
        return {k: v.detach() for k, v in archive.state_dict().items()}
    state = read_torch_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, f"holds a {type(state).__name__}, not a state dict of tensors.",
                              "Expected an OpenAI CLIP TorchScript .pt or its state_dict.")
    return dict(state)


def _shape(state: Mapping[str, torch.Tensor], key: str, path: object) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(path, f"missing key {key}, needed to infer the architecture.",
                              "Expected an OpenAI CLIP ViT checkpoint (ResNet CLIPs are not "
                              "supported).")
    return tuple(state[key].shape)


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    # The highest index, not the number of indices: a file lacking a whole block must be
    # refused for its missing keys, not loaded as a shallower network.
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return 1 + max((int(m.group(1)) for k in state if (m := pattern.match(k))), default=-1)


def infer_clip_config(state: Mapping[str, torch.Tensor], path: object = "<state>") -> ClipTowerCfg:
    """The ClipTowerCfg of an OpenAI-layout ViT state dict, derived from shapes as OpenAI does.

    Args:
        state: OpenAI-layout name -> tensor mapping.
        path: the file, for messages.
    """
    vision_width, _, patch_size, _ = _shape(state, "visual.conv1.weight", path)
    n_tokens = _shape(state, "visual.positional_embedding", path)[0]  # grid**2 + 1
    grid = round((n_tokens - 1) ** 0.5)
    text_width = _shape(state, "ln_final.weight", path)[0]
    context_length, _ = _shape(state, "positional_embedding", path)
    try:
        return ClipTowerCfg(
            embed_dim=_shape(state, "text_projection", path)[1],
            image_size=patch_size * grid, patch_size=patch_size,
            vision_width=vision_width, vision_heads=vision_width // _OPENAI_HEAD_WIDTH,
            vision_layers=_count_blocks(state, "visual.transformer.resblocks."),
            text_width=text_width, text_heads=text_width // _OPENAI_HEAD_WIDTH,
            text_layers=_count_blocks(state, "transformer.resblocks."),
            context_length=context_length,
            vocab_size=_shape(state, "token_embedding.weight", path)[0],
        )
    except ValueError as e:  # ConfigError: shapes that no CLIP ViT has
        raise CheckpointError(path, f"tensor shapes give no valid CLIP ViT config ({e}).") from e


def _check_meta(meta: Mapping[str, torch.Tensor], cfg: ClipTowerCfg, path: object) -> None:
    """The TorchScript integer attributes must agree with the architecture from the shapes."""
    wanted = {"input_resolution": cfg.image_size, "context_length": cfg.context_length,
              "vocab_size": cfg.vocab_size}
    for key, value in meta.items():
        if value.numel() != 1 or int(value.item()) != wanted[key]:
            raise CheckpointError(path, f"entry {key} is {value.tolist()}, but the weights "
                                        f"imply {wanted[key]}.", "The file is inconsistent.")


def load_openai_clip(path: str | os.PathLike[str], cfg: ClipTowerCfg | None = None
                     ) -> ClipEmbedder:
    """Load an OpenAI CLIP ViT (.pt TorchScript, e.g. ViT-B-32.pt, ViT-L-14-336px.pt) in fp32.

    Only the archive's tensors are read (fp16 in the file, fp32 here); the integer entries
    input_resolution/context_length/vocab_size are checked and dropped. A plain torch state dict
    (or {'state_dict': ...}) with the same keys is accepted too.

    Args:
        path: local path of the .pt file.
        cfg: architecture; None = inferred from the tensor shapes (heads = width // 64).
    """
    state = _read_openai_state(path)
    meta = {k: state.pop(k) for k in _OPENAI_META_KEYS if k in state}
    cfg = cfg or infer_clip_config(state, path)
    _check_meta(meta, cfg, path)
    return _load_into(ClipEmbedder(cfg), state, path)
