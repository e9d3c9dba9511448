"""The generator/editor pipeline: caption + condition -> w -> image; e4e inversion + text edits."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from mm2latent.batching import invariant_forward
from mm2latent_core.errors import ConfigError
from mm2latent.input_checks import check_map_size
from mm2latent.batch_inputs import broadcast, check_beta, check_images, check_texts
from mm2latent.editing import text_edit
from mm2latent_core.modalities.network_input import Spatial, VectorInput
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry, SynthBatch
from mm2latent.model_loading import build_component
from mm2latent.models.autoencoders import SpatialAutoencoder
from mm2latent.models.clip_towers import ClipEmbedder
from mm2latent.models.e4e import E4EEncoder
from mm2latent.models.mapping_net import MappingNet
from mm2latent.models.stylegan2.generator import Generator
from mm2latent.presets import PresetCfg
from mm2latent.seeding import derive_seed
from mm2latent import annotation
from mm2latent.annotation import stored_pixels
from mm2latent.synth import stages


def _quantize(images: torch.Tensor) -> torch.Tensor:
    """Generator output (B, 3, R, R) -> uint8 (B, R, R, 3), exactly as synth-data stores it."""
    return stages.store_pixels(images, images.shape[-1])


class Mm2LatentGenerator:
    """Text(+spatial) -> image generation and text-driven editing with one modality's models.

    Build it with `load_inference`. The e4e encoder and the annotator that labels a real
    image are loaded on first use, so generation never needs their weights files.

    Args:
        preset: the resolved preset (architectures, weights names, store size).
        modality: a condition of `registry` ("mask", "sketch", "flame", ...): the MappingNet's
            spatial input.
        generator: StyleGAN2 generator, eval mode.
        farl: FaRL / CLIP towers; the text tower embeds captions.
        mapping: trained MappingNet, eval mode.
        autoencoder: the map modality's autoencoder the MappingNet was trained with; None for a
            vector modality (flame).
        device: torch device of every network.
        cache_dir: weights cache for the lazily loaded networks; None = the default.
        registry: the modalities; `modality`'s network input says how a raw condition is
            checked and fed; None = default_registry().
    """

    def __init__(self, preset: PresetCfg, modality: str, generator: Generator, farl: ClipEmbedder,
                 mapping: MappingNet, autoencoder: SpatialAutoencoder | None,
                 device: torch.device, cache_dir: Path | None = None,
                 registry: ModalityRegistry | None = None) -> None:
        self.preset, self.modality, self.device, self.cache_dir = preset, modality, device, cache_dir
        self.registry = registry or default_registry()
        self.condition = self.registry.condition(modality)
        self.generator, self.farl, self.mapping, self.autoencoder = generator, farl, mapping, autoencoder
        self._check_dims()
        self._e4e: E4EEncoder | None = None
        self._annotator_value: object = None  # built on first annotate
        self._annotator_built = False

    def _check_dims(self) -> None:
        """ConfigError when the registered models do not fit the preset's networks."""
        cfg = self.mapping.cfg
        vector = isinstance(self.condition, VectorInput)  # a vector feeds the MappingNet as stored
        spatial = self.condition.dim if vector else self.autoencoder.cfg.bottleneck_dim
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
        if isinstance(self.condition, VectorInput):
            return self.condition.check(spatial).to(self.device)  # (B, D)
        maps = self.condition.check(spatial)  # (B, H, W)
        ae_cfg = self.autoencoder.cfg
        check_map_size(maps.shape, self.modality, min(ae_cfg.resolution, self.preset.store_size))
        maps = torch.stack([self.condition.resize(m, ae_cfg.resolution) for m in maps])  # (B, R, R)
        inputs = self.condition.to_input(maps.to(self.device), ae_cfg)
        # Batch-invariant like synth-data's stages: a lone map encodes as it did in a batch.
        return invariant_forward(self.autoencoder.encode, inputs)  # (B, D)

    @torch.no_grad()
    def latents(self, texts: Sequence[str], spatial: Spatial) -> torch.Tensor:
        """w (B, w_dim) = MappingNet(text embedding, spatial embedding).

        Args:
            texts: B captions, or one caption for every spatial condition.
            spatial: B conditions, or one condition for every caption (see spatial_embeddings).
        """
        text, space = broadcast(self.text_embeddings(texts), self.spatial_embeddings(spatial))
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

    def _annotator(self) -> object:
        """What the modality's spec builds to annotate an image (a network, a config or None)."""
        if not self._annotator_built:
            spec = self.registry.get(self.modality)
            annotator = None if spec.build is None else spec.build(self.preset, self.cache_dir)
            if isinstance(annotator, torch.nn.Module):
                annotator = annotator.to(self.device).eval().requires_grad_(False)
            self._annotator_value, self._annotator_built = annotator, True
        return self._annotator_value

    @torch.no_grad()
    def annotate(self, images01: torch.Tensor) -> Spatial:
        """The images' own raw condition (mask ids, 0/255 sketch, flame code, ...), as synth-data
        computes it: the modality's spec annotates them.

        Args:
            images01: (B, 3, H, W) FFHQ-aligned RGB in [0, 1]; resized to the preset's stored
                size and quantised to uint8 first, as the annotators see dataset images.
        """
        pixels = stored_pixels(check_images(images01), self.preset.store_size)  # (B, S, S, 3)
        # A real photo has no generator latent: w is empty (condition annotators never read it).
        batch = SynthBatch(w=torch.empty(pixels.shape[0], 0), pixels=pixels.to(self.device),
                           images01=annotation.to_float_images(pixels).to(self.device))
        return self.registry.get(self.modality).annotate(self._annotator(), batch).values

    @torch.no_grad()
    def invert(self, images01: torch.Tensor) -> torch.Tensor:
        """e4e w+ (B, num_ws, w_dim) of (B, 3, H, W) images in [0, 1]."""
        return self._e4e_encoder().invert(check_images(images01).to(self.device))

    @torch.no_grad()
    def edit(self, images01: torch.Tensor, target_text: str, pivot_text: str, beta: float,
             spatial: Spatial | None = None) -> torch.Tensor:
        """(B, R, R, 3) uint8 edited images: w+ + beta * (Net(target) - Net(pivot)).

        One beta of mm2latent.editing.text_edit (the one text-edit implementation, which the
        CLI, the app and edit-dataset use): e4e, the MappingNet and synthesis run per photo, so
        a photo's edit does not depend on the others in the batch.

        Args:
            images01: (B, 3, H, W) FFHQ-aligned RGB in [0, 1].
            target_text: description of the wanted result, e.g. "a smiling face".
            pivot_text: neutral description, e.g. "a face".
            beta: edit strength; 0 returns the e4e reconstruction.
            spatial: the images' conditions (one, or one per image); None = annotate them.
        """
        result = text_edit(self, images01, target_text, pivot_text, check_beta(beta), spatial)
        return result.images[:, 0]  # (B, R, R, 3)
