"""Load pretrained StyleGAN2 generators from the official checkpoint formats.

Supported: NVIDIA stylegan2-ada-pytorch network pickles (`ffhq.pkl`, `G_ema`), rosinality
stylegan2-pytorch `.pt` files (`g_ema` + `latent_avg`) and e4e `e4e_ffhq_encode.pt`
(the generator under `decoder.`). All of them become our `Generator`, whose state_dict uses
NVIDIA's names, loaded strictly: a missing key or a wrong shape is a CheckpointError.
Nothing here executes code from a file: torch files are read with `weights_only=True` and
NVIDIA pickles with a restricted unpickler (see nvidia_pickle.py).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

import torch

from mm2latent.checkpoint_io import (check_key_sets, describe_container, load_state_checked,
                                     read_torch_checkpoint)
from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.stylegan2 import rosinality
from mm2latent.models.stylegan2.generator import Generator, GeneratorCfg
from mm2latent.models.stylegan2.nvidia_pickle import (
    PersistentObject,
    flatten_persistent_state,
    read_network_pickle,
)
from mm2latent.seeding import seeded_init
from storage.fs import open_read

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
SUPPORTED_FORMATS = (
    "NVIDIA stylegan2-ada-pytorch network pickle (ffhq.pkl: dict with G_ema)",
    "rosinality stylegan2-pytorch torch file ({'g_ema': state_dict, 'latent_avg': [w_dim]})",
    "e4e torch file ({'state_dict': {'decoder.*', 'encoder.*'}, 'latent_avg', 'opts'})",
)
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save (zip container, torch >= 1.6)
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # legacy torch.save header
_GENERATOR_ARG_NAMES = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels",
                        "mapping_kwargs", "synthesis_kwargs")
# Accepted *_kwargs keys -> the only value our Generator implements (None = any value). Files
# trained with the PyTorch code record few keys; ones converted from TF by legacy.py record all.
_SYNTHESIS_FIXED: dict[str, Any] = {"architecture": "skip", "resample_filter": [1, 3, 3, 1],
                                    "use_noise": True, "activation": "lrelu",
                                    "num_fp16_res": None, "fp16_channels_last": None,
                                    "channel_base": None, "channel_max": None, "conv_clamp": None}
_MAPPING_FIXED: dict[str, Any] = {"num_layers": None, "lr_multiplier": None, "w_avg_beta": None,
                                  "activation": "lrelu", "embed_features": None,
                                  "layer_features": None}


@contextlib.contextmanager
def _open(path: PathLike) -> Iterator[BinaryIO]:
    """Open a local path or fsspec URL for binary reading; a missing file is a CheckpointError."""
    with contextlib.ExitStack() as stack:
        try:
            f = stack.enter_context(open_read(os.fspath(path)))
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            raise CheckpointError(path, f"cannot open the file: {e}") from e
        yield f


def _torch_load(path: PathLike) -> Any:
    """torch.load with weights_only=True, admitting argparse.Namespace (rosinality/e4e `args`)."""
    if sniff_format(path) != "torch":
        raise CheckpointError(path, "a plain pickle, not a torch.save file.",
                              fix="For an NVIDIA network pickle use load_nvidia_pickle or load_generator.")
    return read_torch_checkpoint(path, safe_globals=[argparse.Namespace])


def _build_generator(cfg: GeneratorCfg, path: PathLike) -> Generator:
    """Construct a Generator for `cfg` without touching the caller's RNG state."""
    try:
        with seeded_init(0):  # every value is overwritten by the checkpoint
            return Generator(cfg)
    except (ConfigError, ValueError) as e:
        raise CheckpointError(path, f"its architecture {cfg} is not buildable: {e}") from e


def load_state_strict(G: Generator, state: dict[str, torch.Tensor], path: PathLike) -> Generator:
    """Copy `state` into G: every key of G required with its exact shape, no key left over.

    Returns G in eval mode with gradients off (a pretrained generator stays frozen).
    """
    load_state_checked(G, state, path)
    return G.eval().requires_grad_(False)


def _check_kwargs(kwargs: Any, fixed: dict[str, Any], what: str, path: PathLike) -> dict[str, Any]:
    """Validate NVIDIA *_kwargs: known keys only, and the implemented value where one is fixed."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, dict):
        raise CheckpointError(path, f"G_ema {what} is a {type(kwargs).__name__}, not a dict")
    for key, value in kwargs.items():
        if key not in fixed:
            raise CheckpointError(path, f"G_ema {what} has unsupported option {key}={value!r}; "
                                  f"supported: {', '.join(sorted(fixed))}")
        want = fixed[key]
        if want is None or value is None:
            continue
        same = (isinstance(value, (list, tuple)) and list(value) == want
                if isinstance(want, list) else value == want)
        if not same:
            raise CheckpointError(path, f"G_ema {what}.{key}={value!r} is not supported (only {want!r})")
    return dict(kwargs)


def cfg_from_nvidia_init(init_args: Any, init_kwargs: Any, path: PathLike) -> GeneratorCfg:
    """GeneratorCfg from an NVIDIA Generator's pickled `_init_args` / `_init_kwargs`."""
    if not isinstance(init_kwargs, dict) or not isinstance(init_args, (tuple, list)):
        raise CheckpointError(path, "G_ema has no _init_args/_init_kwargs; not a stylegan2-ada Generator")
    kw = dict(zip(_GENERATOR_ARG_NAMES, init_args)) | dict(init_kwargs)
    missing = [k for k in ("z_dim", "w_dim", "img_resolution", "img_channels") if k not in kw]
    if missing:
        raise CheckpointError(path, f"G_ema init kwargs lack {', '.join(missing)}")
    if int(kw.get("c_dim", 0)) != 0:
        raise CheckpointError(path, f"G_ema is class-conditional (c_dim={kw['c_dim']}); only "
                              "unconditional generators (c_dim=0) are supported.")
    m = _check_kwargs(kw.get("mapping_kwargs"), _MAPPING_FIXED, "mapping_kwargs", path)
    s = _check_kwargs(kw.get("synthesis_kwargs"), _SYNTHESIS_FIXED, "synthesis_kwargs", path)
    if m.get("layer_features") not in (None, kw["w_dim"]):
        raise CheckpointError(path, f"mapping layer_features={m['layer_features']} != w_dim unsupported")
    defaults = GeneratorCfg()
    clamp = s.get("conv_clamp")
    return GeneratorCfg(
        z_dim=int(kw["z_dim"]), w_dim=int(kw["w_dim"]), img_resolution=int(kw["img_resolution"]),
        img_channels=int(kw["img_channels"]),
        mapping_layers=int(m.get("num_layers", defaults.mapping_layers)),
        mapping_lr_multiplier=float(m.get("lr_multiplier", defaults.mapping_lr_multiplier)),
        channel_base=int(s.get("channel_base", 32768)), channel_max=int(s.get("channel_max", 512)),
        conv_clamp=None if clamp is None else float(clamp))


def load_nvidia_pickle(path: PathLike) -> Generator:
    """Load `G_ema` from an NVIDIA stylegan2-ada-pytorch network pickle, never executing its code.

    Args:
        path: local path or fsspec URL of the `.pkl` file (e.g. `ffhq.pkl`).
    """
    with _open(path) as f:
        data = read_network_pickle(f, os.fspath(path))
    if not isinstance(data, dict) or "G_ema" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(path, f"no 'G_ema' in the pickle (found {keys}); expected an "
                              "NVIDIA network pickle with G, D, G_ema.")
    g_ema = data["G_ema"]
    if not isinstance(g_ema, PersistentObject) or g_ema.class_name != "Generator":
        raise CheckpointError(path, f"G_ema is {getattr(g_ema, 'class_name', type(g_ema).__name__)}, "
                              "not a persistent Generator")
    cfg = cfg_from_nvidia_init(g_ema.state.get("_init_args", ()), g_ema.state.get("_init_kwargs"), path)
    state = flatten_persistent_state(g_ema, os.fspath(path))
    logger.info("%s: NVIDIA G_ema %s", path, cfg)
    return load_state_strict(_build_generator(cfg, path), state, path)


def _w_avg_from(latent_avg: Any, w_dim: int, path: PathLike) -> torch.Tensor | None:
    """mapping.w_avg from a `latent_avg` of shape (w_dim,), (1, w_dim) or (num_ws, w_dim) (row 0)."""
    if latent_avg is None:
        logger.warning("%s: no latent_avg; mapping.w_avg stays zero, so truncation is wrong", path)
        return None
    if not isinstance(latent_avg, torch.Tensor) or latent_avg.shape[-1] != w_dim or latent_avg.dim() > 2:
        found = tuple(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
        raise CheckpointError(path, f"latent_avg: expected shape ({w_dim},) or (N, {w_dim}), found {found}")
    rows = latent_avg.detach().float().reshape(-1, w_dim)  # (N, w_dim)
    spread = (rows - rows[:1]).abs().max().item()
    if spread > 1e-5:
        logger.warning("%s: latent_avg rows differ by up to %.3g; using row 0 as w_avg", path, spread)
    return rows[0].clone()


def _from_rosinality_state(sd: dict[str, torch.Tensor], latent_avg: Any,
                           path: PathLike, file_prefix: str = "") -> Generator:
    """Build and load a Generator from a rosinality generator state_dict plus latent_avg."""
    p = os.fspath(path)
    layout = rosinality.infer_layout(sd, p)
    cfg = rosinality.cfg_from_layout(layout, p)
    G = _build_generator(cfg, path)
    state = rosinality.to_nvidia_state(sd, layout, p, file_prefix)
    # rosinality has no filter for the non-upsampling layers: use ours, after checking that the
    # file's upsampling filters are the same standard [1,3,3,1] filter.
    own = G.state_dict()
    for key, value in state.items():
        if key.endswith("resample_filter") and not torch.allclose(value, own[key], atol=1e-6):
            raise CheckpointError(path, f"{key}: the file's blur kernel differs from the [1,3,3,1] "
                                  "filter this Generator implements")
    for key in own:
        if key.endswith("resample_filter"):
            state.setdefault(key, own[key])
    w_avg = _w_avg_from(latent_avg, cfg.w_dim, path)
    state["mapping.w_avg"] = own["mapping.w_avg"] if w_avg is None else w_avg
    return load_state_strict(G, state, path)


def _state_dict_under(obj: Any, key: str, path: PathLike) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not isinstance(obj.get(key), dict):
        found = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(path, f"no {key!r} state_dict in the checkpoint (found {found})")
    return obj[key]


def _rosinality_from_ckpt(ckpt: Any, path: PathLike, prefix: str) -> Generator:
    if prefix:
        sd = {k[len(prefix):]: v for k, v in _state_dict_under(ckpt, "state_dict", path).items()
              if k.startswith(prefix)}
    else:
        sd = _state_dict_under(ckpt, "g_ema", path)
    return _from_rosinality_state(sd, ckpt.get("latent_avg"), path, prefix)


def load_rosinality(path: PathLike, prefix: str = "") -> Generator:
    """Load a rosinality stylegan2-pytorch generator (`g_ema`, or `prefix`-ed keys of `state_dict`).

    Args:
        path: local path or fsspec URL of the `.pt` file.
        prefix: "" reads ckpt['g_ema']; otherwise the keys of ckpt['state_dict'] that start with
            `prefix` (e.g. "decoder."), with the prefix removed.
    """
    return _rosinality_from_ckpt(_torch_load(path), path, prefix)


def _e4e_decoder_from_ckpt(ckpt: Any, path: PathLike) -> Generator:
    """The generator under `decoder.` of a loaded e4e checkpoint, w_avg = row 0 of latent_avg.

    The encoder side of the same file is read by mm2latent.models.e4e.
    """
    sd = _state_dict_under(ckpt, "state_dict", path)
    decoder_sd = {k[len("decoder."):]: v for k, v in sd.items() if k.startswith("decoder.")}
    if not decoder_sd:
        raise CheckpointError(path, "no 'decoder.*' keys in state_dict; not an e4e/pSp checkpoint")
    # e4e's pSp state_dict holds the encoder and the decoder only; anything else is another net
    check_key_sets(path, [], [k for k in sd if not k.startswith(("encoder.", "decoder."))])
    return _from_rosinality_state(decoder_sd, ckpt.get("latent_avg"), path, "decoder.")


def load_e4e_decoder(path: PathLike) -> Generator:
    """Load the generator of an e4e checkpoint (`e4e_ffhq_encode.pt`; w_avg = row 0 of latent_avg).

    Args:
        path: local path or fsspec URL of the `.pt` file.
    """
    return _e4e_decoder_from_ckpt(_torch_load(path), path)


def _torch_layout(ckpt: Any, path: PathLike) -> str:
    """'rosinality' or 'e4e' from the keys of a loaded torch checkpoint."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("g_ema"), dict):
        return "rosinality"
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict) and any(
            k.startswith("decoder.") for k in ckpt["state_dict"]):
        return "e4e"
    raise CheckpointError(path, "torch file without a known generator layout (found "
                          f"{describe_container(ckpt)}).",
                          fix="Supported: " + "; ".join(SUPPORTED_FORMATS))


def sniff_format(path: PathLike) -> str:
    """'torch' (zip or legacy torch.save) or 'nvidia' (plain pickle), from the file header."""
    with _open(path) as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if head.startswith(_ZIP_MAGIC) or head == _LEGACY_TORCH_MAGIC:
        return "torch"
    if head[:1] == b"\x80":  # pickle protocol >= 2
        return "nvidia"
    raise CheckpointError(path, "not a pickle or torch file.",
                          fix="Supported: " + "; ".join(SUPPORTED_FORMATS))


def load_generator(path: PathLike) -> Generator:
    """Load a pretrained generator from any supported format, detected from the file itself.

    Args:
        path: local path or fsspec URL of an NVIDIA `.pkl`, rosinality `.pt` or e4e `.pt`.
    """
    if sniff_format(path) == "nvidia":
        return load_nvidia_pickle(path)
    ckpt = _torch_load(path)  # reads the header once more; cheap next to the load
    if _torch_layout(ckpt, path) == "rosinality":
        return _rosinality_from_ckpt(ckpt, path, prefix="")
    return _e4e_decoder_from_ckpt(ckpt, path)
