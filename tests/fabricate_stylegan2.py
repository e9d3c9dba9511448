"""Write StyleGAN2 checkpoints in the official container formats, filled with a Generator's weights.

- `write_nvidia_pickle`: a stylegan2-ada-pytorch network pickle as `pickle.dump` writes it:
  {G, D, G_ema, training_set_kwargs, augment_pipe}, every module a call to
  `torch_utils.persistence._reconstruct_persistent_obj(meta)` with the official nested
  `_modules` tree, `dnnlib.util.EasyDict` kwargs and numpy float64 attributes. No NVIDIA code
  is imported: the globals are written by name with a small pure-Python Pickler subclass.
- `write_rosinality_pt`: rosinality stylegan2-pytorch `{'g_ema': state_dict, 'latent_avg'}`.
- `write_e4e_pt`: e4e `{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg', 'opts'}`.

The rosinality layout here is written out independently of the library's rename table (from
rosinality's model.py construction order), so a wrong rename cannot cancel itself out.
"""

from __future__ import annotations

import argparse
import collections
import io
import math
import os
import pickle
from typing import Any

import numpy as np
import torch

from mm2latent.models.stylegan2.generator import Generator, GeneratorCfg

BUFFER_NAMES = ("resample_filter", "noise_const", "w_avg")  # NVIDIA buffers; the rest are Parameters
DEFAULT_MODULE_SRC = "# stand-in for the pickled networks.py source (fabricated for tests)\n"


class _Global:
    """A named global written into the pickle without importing it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # save_reduce requires a callable
        raise TypeError(f"{self.module}.{self.name} is only a pickle reference")


class _Persistent:
    """Pickles as `torch_utils.persistence._reconstruct_persistent_obj(meta)`."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta


class _EasyDict(dict):
    """Pickles as a `dnnlib.util.EasyDict` (NEWOBJ + SETITEMS, like any dict subclass)."""


_RECONSTRUCT = _Global("torch_utils.persistence", "_reconstruct_persistent_obj")
_EASYDICT = _Global("dnnlib.util", "EasyDict")


class _OfficialPickler(pickle._Pickler):
    """Pure-Python Pickler that can name globals (persistence, EasyDict) that are not importable."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: io.BufferedIOBase, protocol: int, numpy_module: str) -> None:
        super().__init__(file, protocol=protocol)
        self.numpy_scalar = _Global(numpy_module, "scalar")

    def _save_global_ref(self, obj: _Global) -> None:
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_easydict(self, obj: _EasyDict) -> None:
        self.save(_EASYDICT)
        self.write(pickle.EMPTY_TUPLE + pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items()))

    dispatch[_Global] = _save_global_ref
    dispatch[_EasyDict] = _save_easydict

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is _Persistent:
            return _RECONSTRUCT, (obj.meta,)
        if type(obj) is np.float64:  # numpy.core (numpy 1.x files) or numpy._core (numpy 2)
            return self.numpy_scalar, (obj.dtype, obj.tobytes())
        return NotImplemented


def _module(class_name: str, params: dict, buffers: dict, modules: dict, attrs: dict,
            init_args: tuple, init_kwargs: dict, module_src: str) -> _Persistent:
    """A persistent module in eval mode (snapshots are saved after .eval()): nn.Module's
    attribute dict in upstream order, then the class's own fields."""
    hooks = ("_backward_pre_hooks", "_backward_hooks", "_is_full_backward_hook", "_forward_hooks",
             "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks",
             "_forward_pre_hooks_with_kwargs", "_state_dict_hooks", "_state_dict_pre_hooks",
             "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")
    state: dict[str, Any] = {"training": False, "_parameters": params, "_buffers": buffers,
                             "_non_persistent_buffers_set": set()}
    for name in hooks:
        state[name] = None if name == "_is_full_backward_hook" else collections.OrderedDict()
    state["_modules"] = modules
    state.update(attrs)
    state["_init_args"] = init_args
    state["_init_kwargs"] = init_kwargs
    meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)
    return _Persistent(meta)


class _TreeBuilder:
    """Builds the official Generator module tree from our Generator's (NVIDIA-named) state_dict."""

    def __init__(self, G: Generator, module_src: str) -> None:
        self.sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
        self.cfg: GeneratorCfg = G.cfg
        self.src = module_src
        clamp = self.cfg.conv_clamp  # train.py passes an int (256)
        self.clamp = int(clamp) if clamp is not None and float(clamp).is_integer() else clamp

    def tensors(self, prefix: str, names: tuple[str, ...]) -> tuple[dict, dict]:
        params, buffers = {}, {}
        for name in names:
            t = self.sd[prefix + name]
            if name in BUFFER_NAMES:
                buffers[name] = t
            else:
                params[name] = torch.nn.Parameter(t, requires_grad=False)
        return params, buffers

    def node(self, class_name: str, prefix: str, names: tuple[str, ...], modules: dict,
             attrs: dict, args: tuple, kwargs: dict) -> _Persistent:
        params, buffers = self.tensors(prefix, names)
        return _module(class_name, params, buffers, modules, attrs, args, kwargs, self.src)

    def fc(self, prefix: str, n_in: int, n_out: int, lr: float, act: str, bias_init: float) -> _Persistent:
        attrs = {"activation": act, "weight_gain": np.float64(lr / np.sqrt(n_in)), "bias_gain": lr}
        kwargs = {"activation": act, "lr_multiplier": lr} if act != "linear" else {"bias_init": bias_init}
        return self.node("FullyConnectedLayer", prefix, ("weight", "bias"), {}, attrs, (n_in, n_out), kwargs)

    def layer(self, prefix: str, c_in: int, c_out: int, res: int, up: int) -> _Persistent:
        w_dim, clamp = self.cfg.w_dim, self.clamp
        attrs = {"resolution": res, "up": up, "use_noise": True, "activation": "lrelu",
                 "conv_clamp": clamp, "padding": 1, "act_gain": np.float64(np.sqrt(2))}
        upsampling = {"up": up, "resample_filter": [1, 3, 3, 1]} if up > 1 else {}
        kwargs = {"w_dim": w_dim, "resolution": res, **upsampling, "conv_clamp": clamp,
                  "channels_last": False}
        affine = self.fc(prefix + "affine.", w_dim, c_in, 1, "linear", 1)
        names = ("weight", "noise_strength", "bias", "resample_filter", "noise_const")
        return self.node("SynthesisLayer", prefix, names, {"affine": affine}, attrs, (c_in, c_out), kwargs)

    def torgb(self, prefix: str, c_in: int) -> _Persistent:
        cfg = self.cfg
        attrs = {"conv_clamp": self.clamp, "weight_gain": np.float64(1 / np.sqrt(c_in))}
        kwargs = {"w_dim": cfg.w_dim, "conv_clamp": self.clamp, "channels_last": False}
        affine = self.fc(prefix + "affine.", cfg.w_dim, c_in, 1, "linear", 1)
        return self.node("ToRGBLayer", prefix, ("weight", "bias"), {"affine": affine}, attrs,
                         (c_in, cfg.img_channels), kwargs)

    def block(self, res: int) -> _Persistent:
        cfg, prefix = self.cfg, f"synthesis.b{res}."
        c_in, c_out = (cfg.channels(res // 2) if res > 4 else 0), cfg.channels(res)
        modules = {} if res == 4 else {"conv0": self.layer(prefix + "conv0.", c_in, c_out, res, 2)}
        modules["conv1"] = self.layer(prefix + "conv1.", c_out, c_out, res, 1)
        modules["torgb"] = self.torgb(prefix + "torgb.", c_out)
        names = ("const", "resample_filter") if res == 4 else ("resample_filter",)
        is_last = res == cfg.img_resolution
        attrs = {"in_channels": c_in, "w_dim": cfg.w_dim, "resolution": res,
                 "img_channels": cfg.img_channels, "is_last": is_last, "architecture": "skip",
                 "use_fp16": False, "channels_last": False, "num_conv": len(modules) - 1,
                 "num_torgb": 1}
        kwargs = {"w_dim": cfg.w_dim, "resolution": res, "img_channels": cfg.img_channels,
                  "is_last": is_last, "use_fp16": False, "conv_clamp": self.clamp}
        return self.node("SynthesisBlock", prefix, names, modules, attrs, (c_in, c_out), kwargs)

    def generator(self, init_kwargs: dict) -> _Persistent:
        cfg = self.cfg
        res_list = cfg.block_resolutions()
        num_ws = 2 * len(res_list)
        synthesis = self.node(
            "SynthesisNetwork", "synthesis.", (), {f"b{r}": self.block(r) for r in res_list},
            {"w_dim": cfg.w_dim, "img_resolution": cfg.img_resolution,
             "img_resolution_log2": int(math.log2(cfg.img_resolution)),
             "img_channels": cfg.img_channels, "block_resolutions": res_list, "num_ws": num_ws},
            (), {"w_dim": cfg.w_dim, "img_resolution": cfg.img_resolution,
                 "img_channels": cfg.img_channels, **init_kwargs["synthesis_kwargs"]})
        fcs = {f"fc{i}": self.fc(f"mapping.fc{i}.", cfg.z_dim if i == 0 else cfg.w_dim, cfg.w_dim,
                                 cfg.mapping_lr_multiplier, "lrelu", 0)
               for i in range(cfg.mapping_layers)}
        mapping = self.node(
            "MappingNetwork", "mapping.", ("w_avg",), fcs,
            {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": cfg.w_dim, "num_ws": num_ws,
             "num_layers": cfg.mapping_layers, "w_avg_beta": 0.995},
            (), {"z_dim": cfg.z_dim, "c_dim": 0, "w_dim": cfg.w_dim, "num_ws": num_ws,
                 **init_kwargs["mapping_kwargs"]})
        attrs = {k: init_kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
        attrs["num_ws"] = num_ws
        return self.node("Generator", "", (), {"synthesis": synthesis, "mapping": mapping}, attrs,
                         (), init_kwargs)


def nvidia_init_kwargs(cfg: GeneratorCfg, *, converted_from_tf: bool = False,
                       **overrides: Any) -> dict[str, Any]:
    """The Generator `_init_kwargs` recorded for cfg by train.py, or by legacy.py's TF conversion."""
    clamp = cfg.conv_clamp  # train.py records an int (256)
    clamp = int(clamp) if clamp is not None and float(clamp).is_integer() else clamp
    mapping = _EasyDict(num_layers=cfg.mapping_layers)
    synthesis = _EasyDict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                          num_fp16_res=4, conv_clamp=clamp)
    if converted_from_tf:  # legacy.convert_tf_generator spells out every option
        mapping.update(embed_features=None, layer_features=None, activation="lrelu",
                       lr_multiplier=cfg.mapping_lr_multiplier, w_avg_beta=0.995)
        synthesis.update(num_fp16_res=0, architecture="skip", resample_filter=[1, 3, 3, 1],
                         use_noise=True, activation="lrelu")
    kwargs: dict[str, Any] = {
        "z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "mapping_kwargs": mapping,
        "synthesis_kwargs": synthesis, "c_dim": 0, "img_resolution": cfg.img_resolution,
        "img_channels": cfg.img_channels,
    }
    kwargs.update(overrides)
    return kwargs


def write_nvidia_pickle(path: str | os.PathLike, G: Generator, init_kwargs: dict | None = None, *,
                        module_src: str = DEFAULT_MODULE_SRC, protocol: int = 4,
                        numpy_module: str = "numpy._core.multiarray",
                        training_set_kwargs: Any = None) -> None:
    """Write G's weights as an NVIDIA network snapshot pickle (G and G_ema copies, a minimal D).

    Args:
        path: output file.
        G: our Generator; its state_dict fills every tensor.
        init_kwargs: Generator `_init_kwargs` to record; None = `nvidia_init_kwargs(G.cfg)`.
        module_src: source text stored in every meta (the official loader would exec it).
        protocol: pickle protocol (3 for Python 3.7-era files, 4 for newer).
        numpy_module: module of numpy's scalar rebuild ("numpy.core.multiarray" in old files).
        training_set_kwargs: value stored under that key (any picklable object).
    """
    init_kwargs = nvidia_init_kwargs(G.cfg) if init_kwargs is None else init_kwargs
    # training_loop.py deep-copies each network, calls .eval().requires_grad_(False), and
    # dumps {training_set_kwargs, G, D, G_ema, augment_pipe} in this order.
    g_ema = _TreeBuilder(G, module_src).generator(init_kwargs)
    g_train = _TreeBuilder(G, module_src).generator(init_kwargs)
    d_weight = torch.nn.Parameter(torch.randn(4, 3, 1, 1), requires_grad=False)
    fromrgb = _module("Conv2dLayer", {"weight": d_weight}, {}, {}, {"activation": "lrelu"}, (3, 4),
                      {"kernel_size": 1}, module_src)
    block = _module("DiscriminatorBlock", {}, {}, {"fromrgb": fromrgb}, {}, (0, 4, 4), {}, module_src)
    d = _module("Discriminator", {}, {}, {"b4": block}, {"img_resolution": G.cfg.img_resolution},
                (), {"c_dim": 0}, module_src)
    if training_set_kwargs is None:  # a plain dict: training_loop.py stores dict(kwargs)
        training_set_kwargs = dict(class_name="training.dataset.ImageFolderDataset",
                                   path="ffhq.zip", use_labels=False, max_size=70000,
                                   xflip=True, resolution=G.cfg.img_resolution)
    data = {"training_set_kwargs": training_set_kwargs, "G": g_train, "D": d, "G_ema": g_ema,
            "augment_pipe": None}
    buf = io.BytesIO()
    _OfficialPickler(buf, protocol, numpy_module).dump(data)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def rosinality_state_dict(G: Generator) -> dict[str, torch.Tensor]:
    """G's weights under rosinality stylegan2-pytorch Generator names, in its construction order."""
    nv = {k: v.detach().clone() for k, v in G.state_dict().items()}
    cfg = G.cfg
    sd: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):  # style.0 is PixelNorm
        sd[f"style.{i + 1}.weight"] = nv[f"mapping.fc{i}.weight"]
        sd[f"style.{i + 1}.bias"] = nv[f"mapping.fc{i}.bias"]
    sd["input.input"] = nv["synthesis.b4.const"].unsqueeze(0)  # (1, C, 4, 4)

    def styled(ros: str, src: str, upsample: bool) -> None:
        sd[f"{ros}.conv.weight"] = nv[f"{src}.weight"].unsqueeze(0)  # (1, O, I, 3, 3)
        if upsample:
            sd[f"{ros}.conv.blur.kernel"] = nv[f"{src}.resample_filter"] * 4  # kernel * factor**2
        sd[f"{ros}.conv.modulation.weight"] = nv[f"{src}.affine.weight"]
        sd[f"{ros}.conv.modulation.bias"] = nv[f"{src}.affine.bias"]
        sd[f"{ros}.noise.weight"] = nv[f"{src}.noise_strength"].reshape(1)
        sd[f"{ros}.activate.bias"] = nv[f"{src}.bias"]

    def to_rgb(ros: str, src: str, block: str | None) -> None:
        sd[f"{ros}.bias"] = nv[f"{src}.bias"].reshape(1, -1, 1, 1)  # (1, 3, 1, 1)
        if block is not None:
            sd[f"{ros}.upsample.kernel"] = nv[f"{block}.resample_filter"] * 4
        sd[f"{ros}.conv.weight"] = nv[f"{src}.weight"].unsqueeze(0)  # (1, 3, C, 1, 1)
        sd[f"{ros}.conv.modulation.weight"] = nv[f"{src}.affine.weight"]
        sd[f"{ros}.conv.modulation.bias"] = nv[f"{src}.affine.bias"]

    styled("conv1", "synthesis.b4.conv1", False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", None)
    noise_layers = ["synthesis.b4.conv1"]
    for k, res in enumerate(cfg.block_resolutions()[1:]):
        b = f"synthesis.b{res}"
        styled(f"convs.{2 * k}", f"{b}.conv0", True)
        styled(f"convs.{2 * k + 1}", f"{b}.conv1", False)
        noise_layers += [f"{b}.conv0", f"{b}.conv1"]
    for k, res in enumerate(cfg.block_resolutions()[1:]):
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", f"synthesis.b{res}")
    for j, layer in enumerate(noise_layers):
        sd[f"noises.noise_{j}"] = nv[f"{layer}.noise_const"][None, None]  # (1, 1, R, R)
    return sd


def write_rosinality_pt(path: str | os.PathLike, G: Generator, *, with_training_state: bool = False,
                        latent_avg: bool = True) -> None:
    """Write G as a rosinality `.pt` ({'g_ema', 'latent_avg'}; optionally g, d, optimiser, args)."""
    sd = rosinality_state_dict(G)
    ckpt: dict[str, Any] = {"g_ema": sd}
    if latent_avg:
        ckpt["latent_avg"] = G.mapping.w_avg.detach().clone()  # (w_dim,)
    if with_training_state:  # what rosinality's train.py adds
        ckpt.update(g={k: v.clone() for k, v in sd.items()}, d={"convs.0.0.weight": torch.randn(4, 3, 1, 1)},
                    g_optim={"state": {}, "param_groups": []}, d_optim={"state": {}, "param_groups": []},
                    args=argparse.Namespace(size=G.cfg.img_resolution, n_mlp=G.cfg.mapping_layers),
                    ada_aug_p=0.0)
    torch.save(ckpt, path)


def write_e4e_pt(path: str | os.PathLike, G: Generator, *, opts_as_namespace: bool = False,
                 latent_avg_rows: int | None = None) -> None:
    """Write G as an e4e checkpoint: encoder keys, `decoder.` rosinality keys, latent_avg, opts.

    Args:
        path: output file.
        G: our Generator (the decoder's weights).
        opts_as_namespace: store opts as argparse.Namespace (default: vars(), as e4e's coach does).
        latent_avg_rows: rows of latent_avg (default num_ws, i.e. 18 for 1024 px).
    """
    rows = G.num_ws if latent_avg_rows is None else latent_avg_rows
    encoder = {"input_layer.0.weight": torch.randn(64, 3, 3, 3), "input_layer.1.weight": torch.ones(64),
               "styles.0.convs.0.weight": torch.randn(512, 512, 3, 3)[:8, :8],
               "latlayer1.weight": torch.randn(8, 8, 1, 1)}
    state = {f"encoder.{k}": v for k, v in encoder.items()}
    state.update({f"decoder.{k}": v for k, v in rosinality_state_dict(G).items()})
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": G.cfg.img_resolution,
            "start_from_latent_avg": True, "device": "cuda:0", "progressive_steps": [0, 20000]}
    latent_avg = G.mapping.w_avg.detach().clone().repeat(rows, 1)  # (rows, w_dim)
    torch.save({"state_dict": state, "opts": argparse.Namespace(**opts) if opts_as_namespace else opts,
                "latent_avg": latent_avg}, path)
