"""MM2Latent inference: caption + spatial condition -> w -> image, and text-driven real-image edits.

Generation: w = MappingNet(FaRL text embedding of the caption, spatial embedding), where the
spatial embedding is the mask / sketch autoencoder's `encode` of the condition, or the 159-d
3DMM vector as it is; the image is StyleGAN2's synthesis of w broadcast to every layer.

Editing (the paper's latent editing): the real image is inverted by e4e to w+, then
w+' = w+ + beta * (Net(f_target, f_spatial) - Net(f_pivot, f_spatial)); f_spatial is the
embedding of the image's own mask / sketch / 3DMM code, computed by the preset's annotators
exactly as synth-data computes them (stored size, uint8 quantisation), unless given.
Real images must be FFHQ-aligned, as for e4e and the annotators' fixed crops.

The MappingNet and autoencoder come from a model registry written by `mm2latent train`; the
autoencoder is the version whose embeddings the MappingNet was trained on.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mm2latent.batching import run_padded
from mm2latent.errors import ConfigError
from mm2latent.model_loading import build_component, load_weights
from mm2latent.models.autoencoders import SpatialAutoencoder
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.deca import FlameEncoder, ffhq_crop_for_deca
from mm2latent.models.e4e import E4EEncoder
from mm2latent.models.face_parser.bisenet import BiSeNet
from mm2latent.models.mapping_net import MappingNet, apply_edit, edit_direction
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import PresetCfg, get_preset
from mm2latent.seeding import derive_seed
from mm2latent.synth import stages
from mm2latent.synth.encode import encode_png
from mm2latent.training.autoencoders import load_autoencoder, to_network_input
from mm2latent.training.data import resize_map
from mm2latent.training.mapping import FLAME_DIM, load_mapping_net
from mm2latent.training.pipeline import ae_name, mapping_name
from mm2latent.training.registry import ModelRecord, ModelRegistry
from storage.atomic import atomic_write_bytes
from storage.fs import open_fs

logger = logging.getLogger(__name__)

MODALITIES = ("mask", "sketch", "flame")
NUM_MASK_CLASSES = 19  # CelebAMask-HQ ids 0..18
_TAG = re.compile(r"^(?P<name>.+)-v(?P<version>\d+)$")  # ModelRecord.tag, e.g. "mask-ae-v3"

Spatial = np.ndarray | torch.Tensor  # raw condition: mask ids, sketch 0/255 or flame vectors


def check_modality(modality: str) -> str:
    """`modality` if it is one of MODALITIES, else ConfigError listing them."""
    if modality not in MODALITIES:
        raise ConfigError(f"modality={modality!r} is not valid; choose one of "
                          f"{', '.join(MODALITIES)}.")
    return modality


def check_texts(texts: Sequence[str], name: str = "texts") -> list[str]:
    """The captions as a list; ConfigError for a bare str, an empty list or a blank caption."""
    if isinstance(texts, str):
        raise ConfigError(f"{name} must be a list of captions, got a bare str; wrap it: [{texts!r}].")
    texts = list(texts)
    if not texts:
        raise ConfigError(f"{name} is empty; give at least one caption.")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{name}[{i}] is {text!r}; a caption must be a non-empty string, "
                              "e.g. 'a smiling woman with blond hair'.")
    return texts


def _as_tensor(x: Spatial, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.array(x))  # a copy: arrays read from PNGs are read-only
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    raise ConfigError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}.")


def _batched_maps(x: Spatial, name: str) -> torch.Tensor:
    """(B, H, W) from (H, W) or (B, H, W); ConfigError otherwise."""
    t = _as_tensor(x, name)
    if t.ndim == 2:
        t = t.unsqueeze(0)  # (1, H, W)
    if t.ndim != 3 or t.shape[0] == 0:
        raise ConfigError(f"{name} must be (H, W) or (B, H, W) with B >= 1, got {tuple(t.shape)}.")
    return t


def check_masks(masks: Spatial) -> torch.Tensor:
    """(B, H, W) int64 CelebAMask-HQ ids; ConfigError for floats or ids outside 0..18."""
    t = _batched_maps(masks, "mask")
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ConfigError(f"mask must hold integer class ids 0..18, got dtype {t.dtype}.")
    lo, hi = int(t.min()), int(t.max())
    if lo < 0 or hi >= NUM_MASK_CLASSES:
        raise ConfigError(f"mask labels span [{lo}, {hi}] but must lie in 0..18 (CelebAMask-HQ "
                          "ids, 0 background). Fix: pass a label-id PNG, not colours or id*10 grey.")
    return t.long()


def check_sketches(sketches: Spatial) -> torch.Tensor:
    """(B, H, W) uint8 in {0, 1} from 0/255 sketches; ConfigError for any other value."""
    t = _batched_maps(sketches, "sketch")
    bad = (t != 0) & (t != 255)
    if bool(bad.any()):
        found = sorted({float(v) for v in t[bad].unique()[:5].tolist()})
        raise ConfigError(f"sketch must hold only 0 (background) and 255 (stroke); found values "
                          f"{found}. Fix: threshold it, e.g. np.where(sketch >= 128, 255, 0).")
    return (t == 255).to(torch.uint8)


def check_flame(flame: Spatial) -> torch.Tensor:
    """(B, 159) float32 3DMM codes from (159,) or (B, 159); ConfigError otherwise."""
    t = _as_tensor(flame, "flame")
    given = tuple(t.shape)
    if t.ndim == 1:
        t = t.unsqueeze(0)  # (1, 159)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] != FLAME_DIM:
        raise ConfigError(f"flame must be ({FLAME_DIM},) or (B, {FLAME_DIM}) (DECA shape 100 + "
                          f"expression 50 + pose 6 + camera 3), got {given}.")
    if not t.dtype.is_floating_point or not bool(torch.isfinite(t).all()):
        raise ConfigError("flame must be finite floating-point values.")
    return t.float()


def check_beta(beta: float) -> float:
    """`beta` as a float; ConfigError if it is NaN or infinite."""
    if not isinstance(beta, (int, float)) or not math.isfinite(beta):
        raise ConfigError(f"beta={beta!r} must be a finite number (0 = no edit, 1 = the full "
                          "direction; negative values move away from the target).")
    return float(beta)


def check_images(images01: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) float images in [0, 1]; ConfigError otherwise."""
    if not isinstance(images01, torch.Tensor) or not images01.dtype.is_floating_point:
        raise ConfigError("images must be a float torch tensor (B, 3, H, W) in [0, 1].")
    if images01.ndim != 4 or images01.shape[1] != 3 or images01.shape[0] == 0:
        raise ConfigError(f"images must be (B, 3, H, W) RGB with B >= 1, got {tuple(images01.shape)}.")
    if images01.shape[2] != images01.shape[3]:
        raise ConfigError(f"images must be square FFHQ-aligned crops, got H={images01.shape[2]}, "
                          f"W={images01.shape[3]}. Fix: align and crop the face first (FFHQ rule).")
    if float(images01.min()) < 0.0 or float(images01.max()) > 1.0:
        raise ConfigError("images must lie in [0, 1]; divide uint8 pixels by 255.")
    return images01


def _broadcast(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("captions", "spatial conditions")
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a and b made equal in number: a single row is repeated, else both must agree."""
    if a.shape[0] == b.shape[0]:
        return a, b
    if a.shape[0] == 1:
        return a.expand(b.shape[0], -1), b
    if b.shape[0] == 1:
        return a, b.expand(a.shape[0], -1)
    raise ConfigError(f"{a.shape[0]} {names[0]} but {b.shape[0]} {names[1]}; give one of "
                      "either, or the same number of both.")


def _quantize(images: torch.Tensor) -> torch.Tensor:
    """Generator output (B, 3, R, R) -> uint8 (B, R, R, 3), exactly as synth-data stores it."""
    return stages.store_pixels(images, images.shape[-1])


def _stored_pixels(images01: torch.Tensor, size: int) -> torch.Tensor:
    """(B, S, S, 3) uint8 of [0, 1] images at the dataset's stored size (synth-data's resize)."""
    if images01.shape[-2:] != (size, size):
        images01 = F.interpolate(images01, size=(size, size), mode="bilinear",
                                 align_corners=False, antialias=True)
    pixels = (images01 * 255 + 0.5).clamp(0, 255).to(torch.uint8)  # (B, 3, S, S), rounded
    return pixels.permute(0, 2, 3, 1).contiguous()  # (B, S, S, 3)


def _record_for_tag(registry: ModelRegistry, tag: str | None, name: str) -> ModelRecord | None:
    """The record named by a `<name>-v<version>` tag, else the latest `name` (with a warning)."""
    match = _TAG.match(tag or "")
    if match and match["name"] == name:
        return registry.get(name, int(match["version"]))
    logger.warning("no usable embeddings version %r recorded; using the latest %s", tag, name)
    return registry.latest(name)


def load_registered(registry_url: str, modality: str
                    ) -> tuple[MappingNet, SpatialAutoencoder | None, dict[str, str]]:
    """(MappingNet, its autoencoder or None for flame, {name: tag}) from a model registry.

    Args:
        registry_url: directory holding registry.json (e.g. runs/tiny).
        modality: "mask", "sketch" or "flame".
    """
    registry = ModelRegistry(registry_url)
    record = registry.latest(mapping_name(check_modality(modality)))
    if record is None:
        raise ConfigError(f"{registry.index_url}: no {mapping_name(modality)!r} model registered "
                          f"(known: {', '.join(registry.names()) or 'none'}). Fix: run `mm2latent "
                          f"train mapping --modality {modality} --out {registry_url}`.")
    tags = {record.name: record.tag}
    autoencoder = None
    if modality != "flame":
        ae_record = _record_for_tag(registry, record.extra.get("embeddings_version"), ae_name(modality))
        if ae_record is None:
            raise ConfigError(f"{registry.index_url}: no {ae_name(modality)!r} registered. Fix: "
                              "run `mm2latent train autoencoders` first.")
        autoencoder = load_autoencoder(ae_record.checkpoint_url).requires_grad_(False)
        tags[ae_record.name] = ae_record.tag
    return load_mapping_net(record.checkpoint_url).requires_grad_(False), autoencoder, tags


def load_released(names: tuple[str, str], cache_dir: Path | None = None
                  ) -> tuple[MappingNet, SpatialAutoencoder, dict[str, str]]:
    """(MappingNet, autoencoder, {name: name}) of the authors' released files (weights registry).

    Args:
        names: (MappingNet, autoencoder) registry names, from PresetCfg.released_models.
        cache_dir: weights cache; None = the default.
    """
    mapping, autoencoder = (load_weights(n, cache_dir).requires_grad_(False) for n in names)
    return mapping, autoencoder, {n: n for n in names}


def _read_bytes(url: str, what: str) -> bytes:
    fs, path = open_fs(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError as e:
        raise ConfigError(f"{what} file {url} does not exist.") from e


def _open_png(url: str, what: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(_read_bytes(url, what)))
        image.load()
    except OSError as e:
        raise ConfigError(f"{url}: not a readable image for the {what} ({e}).") from e
    return image


def _checked(url: str, check, array: np.ndarray) -> np.ndarray:
    """`array` once `check` accepts it; its ConfigError is re-raised naming the file."""
    try:
        check(array)
    except ConfigError as e:
        raise ConfigError(f"{url}: {e}") from e
    return array


def read_mask(url: str) -> np.ndarray:
    """(H, W) uint8 label ids from a single-channel label PNG (ids 0..18, checked)."""
    image = _open_png(url, "mask")
    if image.mode not in ("L", "P"):
        raise ConfigError(f"{url}: a mask must be a single-channel label PNG (class id per "
                          f"pixel, 0..18), found mode {image.mode}.")
    return _checked(url, check_masks, np.asarray(image))


def read_sketch(url: str) -> np.ndarray:
    """(H, W) uint8 0/255 strokes from a sketch PNG (white strokes on black, values checked)."""
    return _checked(url, check_sketches, np.asarray(_open_png(url, "sketch").convert("L")))


def read_flame(url: str) -> np.ndarray:
    """(B, 159) float32 3DMM codes from a .npy file holding (159,) or (B, 159) (checked)."""
    try:
        array = np.load(io.BytesIO(_read_bytes(url, "flame")), allow_pickle=False)
    except ValueError as e:
        raise ConfigError(f"{url}: not a .npy array of 3DMM codes ({e}).") from e
    return _checked(url, check_flame, array).astype(np.float32).reshape(-1, FLAME_DIM)  # (B, 159)


def read_image(url: str) -> torch.Tensor:
    """(1, 3, H, W) float RGB in [0, 1] of an image file (PNG, JPEG, ...)."""
    rgb = np.asarray(_open_png(url, "image").convert("RGB"))  # (H, W, 3)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def write_png(url: str, images: torch.Tensor | np.ndarray) -> None:
    """Write uint8 images (B, H, W, 3) side by side as one PNG at `url` (atomically)."""
    array = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
    strip = np.concatenate(list(array), axis=1)  # (H, B * W, 3)
    atomic_write_bytes(url, encode_png(strip))


class Mm2LatentGenerator:
    """Text(+spatial) -> image generation and text-driven editing with one modality's models.

    Build it with `load_inference`. The e4e encoder and the annotator that labels a real
    image are loaded on first use, so generation never needs their weights files.

    Args:
        preset: the resolved preset (architectures, weights names, store size).
        modality: "mask", "sketch" or "flame": the MappingNet's spatial input.
        generator: StyleGAN2 generator, eval mode.
        farl: FaRL / CLIP towers; the text tower embeds captions.
        mapping: trained MappingNet, eval mode.
        autoencoder: the mask / sketch autoencoder the MappingNet was trained with; None for flame.
        device: torch device of every network.
        cache_dir: weights cache for the lazily loaded networks; None = the default.
    """

    def __init__(self, preset: PresetCfg, modality: str, generator: Generator, farl: ClipEmbedder,
                 mapping: MappingNet, autoencoder: SpatialAutoencoder | None,
                 device: torch.device, cache_dir: Path | None = None) -> None:
        self.preset, self.modality, self.device, self.cache_dir = preset, modality, device, cache_dir
        self.generator, self.farl, self.mapping, self.autoencoder = generator, farl, mapping, autoencoder
        self._check_dims()
        self._e4e: E4EEncoder | None = None
        self._annotator: torch.nn.Module | None = None

    def _check_dims(self) -> None:
        """ConfigError when the registered models do not fit the preset's networks."""
        cfg = self.mapping.cfg
        spatial = FLAME_DIM if self.autoencoder is None else self.autoencoder.cfg.bottleneck_dim
        pairs = (("text_dim", cfg.text_dim, "FaRL embed_dim", self.farl.cfg.embed_dim),
                 ("spatial_dim", cfg.spatial_dim, f"{self.modality} embedding width", spatial),
                 ("w_dim", cfg.w_dim, "generator w_dim", self.generator.cfg.w_dim))
        for field, got, what, want in pairs:
            if got != want:
                raise ConfigError(f"the registered MappingNet has {field}={got} but the preset "
                                  f"{self.preset.name!r} has {what}={want}. Fix: use the preset "
                                  "the models were trained with.")
        if cfg.output != "w":
            raise ConfigError(f"MappingNet output={cfg.output!r}; inference expects output='w'.")

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, 512) unit-norm FaRL text embeddings of B captions.

        Args:
            texts: non-empty captions.
        """
        return self.farl.encode_text(check_texts(texts)).float()

    @torch.no_grad()
    def spatial_embeddings(self, spatial: Spatial) -> torch.Tensor:
        """(B, spatial_dim) embeddings of raw conditions of this modality.

        Args:
            spatial: mask ids (H, W) / (B, H, W) in 0..18, sketches of 0/255 of the same shapes,
                or flame codes (159,) / (B, 159). Maps are resized to the autoencoder's side as
                in training (nearest for masks, area + re-binarise for sketches).
        """
        if self.modality == "flame":
            return check_flame(spatial).to(self.device)
        maps = check_masks(spatial) if self.modality == "mask" else check_sketches(spatial)
        ae_cfg = self.autoencoder.cfg
        maps = torch.stack([resize_map(m, self.modality, ae_cfg.resolution) for m in maps])  # (B, R, R)
        inputs = to_network_input(maps.to(self.device), ae_cfg)
        # Padded like synth-data's stages so a lone map encodes as it did inside a batch.
        return run_padded(self.autoencoder.encode, inputs)  # (B, D)

    @torch.no_grad()
    def latents(self, texts: Sequence[str], spatial: Spatial) -> torch.Tensor:
        """w (B, w_dim) = MappingNet(text embedding, spatial embedding).

        Args:
            texts: B captions, or one caption for every spatial condition.
            spatial: B conditions, or one condition for every caption (see spatial_embeddings).
        """
        text, space = _broadcast(self.text_embeddings(texts), self.spatial_embeddings(spatial))
        return self.mapping(text, space)  # (B, w_dim)

    @torch.no_grad()
    def synthesize(self, w: torch.Tensor, noise_seed: int | None = None) -> torch.Tensor:
        """(B, R, R, 3) uint8 images of w (B, w_dim) or w+ (B, num_ws, w_dim).

        Args:
            w: latents.
            noise_seed: None = the generator's constant noise; an int = fresh noise per image,
                image i drawn from its own RNG seeded by (noise_seed, i).
        """
        if noise_seed is None:
            return _quantize(self.generator.synthesize_from_w(w, noise_mode="const"))
        images = []
        for i in range(w.shape[0]):
            rng = torch.Generator(self.device).manual_seed(derive_seed(noise_seed, i))
            images.append(self.generator.synthesize_from_w(w[i:i + 1], "random", rng))
        return _quantize(torch.cat(images))

    @torch.no_grad()
    def generate(self, texts: Sequence[str], spatial: Spatial, truncation_psi: float = 1.0,
                 noise_seed: int | None = None) -> torch.Tensor:
        """(B, R, R, 3) uint8 images for captions and spatial conditions.

        Args:
            texts: captions (see latents).
            spatial: conditions (see spatial_embeddings).
            truncation_psi: 1 = w as mapped; < 1 pulls w toward the generator's average w.
            noise_seed: see synthesize.
        """
        if not math.isfinite(truncation_psi):
            raise ConfigError(f"truncation_psi={truncation_psi!r} must be finite (1 = none).")
        w = self.latents(texts, spatial)
        if truncation_psi != 1.0:
            w = self.generator.truncate(w, truncation_psi)
        return self.synthesize(w, noise_seed)

    def _e4e_encoder(self) -> E4EEncoder:
        if self._e4e is None:
            e4e = build_component(self.preset, "e4e", lambda: E4EEncoder(self.preset.e4e), self.cache_dir)
            if e4e.cfg.n_styles != self.generator.num_ws or e4e.cfg.w_dim != self.generator.cfg.w_dim:
                raise ConfigError(f"e4e gives w+ ({e4e.cfg.n_styles}, {e4e.cfg.w_dim}) but the "
                                  f"generator takes ({self.generator.num_ws}, "
                                  f"{self.generator.cfg.w_dim}); the preset's e4e does not fit it.")
            self._e4e = e4e.to(self.device).eval().requires_grad_(False)
        return self._e4e

    def _annotator_net(self) -> torch.nn.Module:
        if self._annotator is None:
            preset = self.preset
            if self.modality == "mask":
                net = build_component(preset, "parser", lambda: BiSeNet(preset.bisenet), self.cache_dir)
            else:
                net = build_component(preset, "deca", lambda: FlameEncoder(preset.deca), self.cache_dir)
            self._annotator = net.to(self.device).eval().requires_grad_(False)
        return self._annotator

    @torch.no_grad()
    def annotate(self, images01: torch.Tensor) -> Spatial:
        """The images' own raw condition: mask ids, 0/255 sketch or flame code, as synth-data.

        Args:
            images01: (B, 3, H, W) FFHQ-aligned RGB in [0, 1]; resized to the preset's stored
                size and quantised to uint8 first, as the annotators see dataset images.
        """
        pixels = _stored_pixels(check_images(images01), self.preset.store_size)  # (B, S, S, 3)
        if self.modality == "sketch":
            return stages.sketches(self.preset.sketch, pixels.cpu())  # (B, R, R) 0/255
        float01 = stages.to_float_images(pixels).to(self.device)  # (B, 3, S, S)
        if self.modality == "mask":
            return stages.parse_masks(self._annotator_net(), float01)[0].cpu()  # (B, S, S)
        return stages.embed(self._annotator_net().flame159, ffhq_crop_for_deca(float01)).cpu()

    @torch.no_grad()
    def invert(self, images01: torch.Tensor) -> torch.Tensor:
        """e4e w+ (B, num_ws, w_dim) of (B, 3, H, W) images in [0, 1]."""
        return self._e4e_encoder().invert(check_images(images01).to(self.device))

    @torch.no_grad()
    def edit(self, images01: torch.Tensor, target_text: str, pivot_text: str, beta: float,
             spatial: Spatial | None = None) -> torch.Tensor:
        """(B, R, R, 3) uint8 edited images: w+ + beta * (Net(target) - Net(pivot)).

        Args:
            images01: (B, 3, H, W) FFHQ-aligned RGB in [0, 1].
            target_text: description of the wanted result, e.g. "a smiling face".
            pivot_text: neutral description, e.g. "a face".
            beta: edit strength; 0 returns the e4e reconstruction.
            spatial: the images' conditions (one, or one per image); None = annotate them.
        """
        beta = check_beta(beta)
        target, pivot = self.text_embeddings(check_texts([target_text], "target_text")
                                             + check_texts([pivot_text], "pivot_text"))
        w_plus = self.invert(images01)  # (B, num_ws, w_dim)
        space = self.spatial_embeddings(self.annotate(images01) if spatial is None else spatial)
        space, _ = _broadcast(space, w_plus[:, 0], ("spatial conditions", "images"))
        rows = w_plus.shape[0]
        delta = edit_direction(self.mapping, target.expand(rows, -1), pivot.expand(rows, -1), space)
        return self.synthesize(apply_edit(w_plus, delta, beta))


def load_inference(preset_name: str, registry_url: str, modality: str, device: str = "cpu",
                   cache_dir: Path | None = None) -> Mm2LatentGenerator:
    """Generator, FaRL, and the registry's MappingNet (+ autoencoder) for `modality`.

    Args:
        preset_name: "tiny" (seeded networks, not faces), "ffhq" (official weights) or
            "ffhq-official" (also the authors' released autoencoders and MappingNets).
        registry_url: model registry directory written by `mm2latent train` (e.g. runs/tiny);
            unused where the preset names the authors' models for `modality`.
        modality: "mask", "sketch" or "flame".
        device: torch device string.
        cache_dir: weights cache; None = the default (MM2LATENT_CACHE or ~/.cache/mm2latent).
    """
    preset = get_preset(preset_name)
    released = preset.released_models(check_modality(modality))
    if released is not None:
        mapping, autoencoder, tags = load_released(released, cache_dir)
    else:
        mapping, autoencoder, tags = load_registered(registry_url, modality)
    generator = build_component(preset, "generator", lambda: Generator(preset.generator), cache_dir)
    farl = build_component(preset, "farl", lambda: ClipEmbedder(preset.farl), cache_dir)
    target = torch.device(device)
    for net in (generator, farl, mapping, autoencoder):
        if net is not None:
            net.to(target).eval().requires_grad_(False)
    logger.info("inference with %s on preset %s", ", ".join(tags.values()), preset.name)
    return Mm2LatentGenerator(preset, modality, generator, farl, mapping, autoencoder, target,
                              cache_dir)
