"""Fabricate the authors' released MM2Latent checkpoints: Lightning 1.x containers, exact layouts.

Key lists and shapes are written out here from the authors' module definitions
(Open-Debin/MM2Latent at 1d381a2: `models/greyseg_encoder/model_arch.py` class `Autoencoder`,
`models/sketch_encoder/sketch_autoencoder.py` classes `NaiveEncoder`/`NaiveDecoder`/`NaiveBlock`),
independently of the project's modules, so a layout mistake there cannot hide in both places.

Lightning 1.x containers reference Lightning's own classes: `hyper_parameters` as an
AttributeDict and, before 1.5, `callbacks` keyed by the callback CLASS. Lightning is not
installed, so `lightning_modules()` registers look-alike classes under Lightning's module names
for the duration of a `torch.save`; the files then hold the same GLOBAL references.
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

WIDTHS = (16, 32, 32, 16, 8)  # both authors' networks: channels per stage, 256 px -> 8 x 8 x 8


def mask_ae_shapes() -> dict[str, tuple[int, ...]]:
    """`Autoencoder` (grey-level masks): encoder.<s>.{0,2} convs, decoder.<2k> transposed convs."""
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 1
    for s, c in enumerate(WIDTHS):
        shapes |= {f"encoder.{s}.0.weight": (c, c_in, 3, 3), f"encoder.{s}.0.bias": (c,),
                   f"encoder.{s}.2.weight": (c, c, 2, 2), f"encoder.{s}.2.bias": (c,)}
        c_in = c
    dec = [(8, 16), (16, 32), (32, 32), (32, 16), (16, 1)]  # ConvTranspose2d(in, out): (in, out, 3, 3)
    for k, (i, o) in enumerate(dec):
        shapes |= {f"decoder.{2 * k}.weight": (i, o, 3, 3), f"decoder.{2 * k}.bias": (o,)}
    return shapes


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def sketch_ae_shapes() -> dict[str, tuple[int, ...]]:
    """`SketchAutoencoderFrameWork`: NaiveEncoder + NaiveDecoder, no conv biases but the head."""
    shapes = {"encoder.conv1.weight": (16, 1, 3, 3), **_bn("encoder.bn1", 16)}
    enc = [(16, 16), (16, 32), (32, 32), (32, 16), (16, 8)]
    for k, (i, o) in enumerate(enc, start=1):
        p = f"encoder.naivenet{k}"
        shapes |= {f"{p}.conv1.weight": (o, i, 3, 3), **_bn(f"{p}.bn1", o),
                   f"{p}.conv2.weight": (o, o, 2, 2), **_bn(f"{p}.bn2", o)}
    dec = [(8, 16), (16, 32), (32, 32), (32, 16), (16, 16)]
    for k, (i, o) in enumerate(dec, start=1):
        p = f"decoder.naivenet{k}"
        shapes |= {f"{p}.conv1.weight": (i, o, 3, 3), **_bn(f"{p}.bn1", o),  # ConvTranspose2d
                   f"{p}.conv2.weight": (o, o, 3, 3), **_bn(f"{p}.bn2", o)}
    shapes |= {"decoder.final_conv1.weight": (2, 16, 1, 1), "decoder.final_conv1.bias": (2,)}
    return shapes


def random_state(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Tensors for `shapes`: conv weights ~ N(0, 1/fan_in), BN statistics plausible."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            state[key] = torch.randn(shape, generator=gen) / fan_in ** 0.5
        elif key.endswith(".weight"):  # BatchNorm scale
            state[key] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=gen)
    return state


_LIGHTNING_CLASSES = {
    "pytorch_lightning.utilities.parsing": ("AttributeDict", dict),
    "pytorch_lightning.callbacks.model_checkpoint": ("ModelCheckpoint", object),
}


@contextlib.contextmanager
def lightning_modules() -> Iterator[dict[str, type]]:
    """Look-alike Lightning classes registered in sys.modules (parents too), removed after."""
    added, classes = [], {}
    for module_name, (cls_name, base) in _LIGHTNING_CLASSES.items():
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
        cls = type(cls_name, (base,), {"__module__": module_name})
        setattr(sys.modules[module_name], cls_name, cls)
        classes[cls_name] = cls
    try:
        yield classes
    finally:
        for name in added:
            del sys.modules[name]


def write_lightning_1x(path: Path, state: dict[str, torch.Tensor], epoch: int = 495,
                       extra: dict | None = None) -> Path:
    """torch.save a Lightning 1.4-style checkpoint: AttributeDict hparams, class-keyed callbacks."""
    with lightning_modules() as cls:
        hparams = cls["AttributeDict"](lr=1e-3, val_savepath="")
        callbacks = {cls["ModelCheckpoint"]: {"best_model_score": np.float64(0.00114),
                                              "best_model_path": f"used_epoch{epoch}.ckpt"}}
        torch.save({"epoch": epoch, "global_step": 123456, "pytorch-lightning_version": "1.4.9",
                    "state_dict": state, "callbacks": callbacks, "hparams_name": "kwargs",
                    "hyper_parameters": hparams,
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}],
                    "lr_schedulers": [], **(extra or {})}, path)
    return path


def place_released_mask_models(cache: Path, mask_checkpoint: Path, mapping_seed: int = 4) -> None:
    """Copy a fabricated mask autoencoder and write a text+mask MappingNet at their cache names."""
    from mm2latent import weights
    from tests.fabricate_mapping import official_mapping_state, write_lightning_checkpoint

    (cache / weights.get_spec("mm2latent.mask-ae-official").filename).write_bytes(
        mask_checkpoint.read_bytes())
    write_lightning_checkpoint(cache / weights.get_spec("mm2latent.mapping-mask-official").filename,
                               official_mapping_state(seed=mapping_seed))


def tiny_official_preset():
    """`tiny` naming the authors' mask autoencoder and text+mask MappingNet (as ffhq-official)."""
    import dataclasses

    from mm2latent import presets
    from mm2latent.presets import AUTOENCODER_PRESETS

    return dataclasses.replace(
        presets.PRESETS["tiny"], name="tiny-official", mask_ae=AUTOENCODER_PRESETS["mask_official"],
        mask_ae_weights="mm2latent.mask-ae-official",
        mapping_mask_weights="mm2latent.mapping-mask-official")
