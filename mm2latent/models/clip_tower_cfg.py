"""The architecture of an OpenAI-layout CLIP ViT, as a config only.

Apart from the towers (clip_towers.py) so that presets and the CLI can name an architecture
without importing open_clip, which pulls in torchvision, timm and torch._dynamo: seconds on
every command start.
"""

from __future__ import annotations

from dataclasses import dataclass

from mm2latent.config_utils import require_positive
from mm2latent_core.dims import LATENT_DIM
from mm2latent_core.errors import ConfigError

CONTEXT_LENGTH = 77  # tokens per caption in every OpenAI-layout CLIP (SOT + 75 + EOT)


@dataclass(frozen=True)
class ClipTowerCfg:
    """Architecture of an OpenAI-layout CLIP ViT (image tower + causal text transformer)."""

    embed_dim: int = LATENT_DIM  # width of the joint embedding both towers project to
    image_size: int = 224       # input H = W of the vision tower after preprocessing, pixels
    patch_size: int = 16        # ViT patch side, pixels (grid = image_size / patch_size)
    vision_width: int = 768     # vision transformer width (channels per token)
    vision_layers: int = 12     # vision transformer residual blocks
    vision_heads: int = 12      # vision attention heads (OpenAI: vision_width // 64)
    text_width: int = 512       # text transformer width
    text_layers: int = 12       # text transformer residual blocks
    text_heads: int = 8         # text attention heads (OpenAI: text_width // 64)
    context_length: int = CONTEXT_LENGTH  # tokens per text, including SOT/EOT; shorter = padded
    vocab_size: int = 49408     # BPE vocabulary of open_clip's SimpleTokenizer (incl. SOT/EOT)
    quick_gelu: bool = True     # x*sigmoid(1.702x) as OpenAI/FaRL trained; False = exact GELU

    def __post_init__(self) -> None:
        require_positive(self, ["embed_dim", "image_size", "patch_size", "vision_width",
                                "vision_layers", "vision_heads", "text_width", "text_layers",
                                "text_heads", "context_length", "vocab_size"])
        if self.image_size % self.patch_size:
            raise ConfigError(f"ClipTowerCfg.image_size {self.image_size} is not a multiple of "
                              f"patch_size {self.patch_size}.")
        for tower in ("vision", "text"):
            width, heads = getattr(self, f"{tower}_width"), getattr(self, f"{tower}_heads")
            if width % heads:
                raise ConfigError(f"ClipTowerCfg.{tower}_width {width} is not divisible by "
                                  f"{tower}_heads {heads}.")

    @property
    def grid_size(self) -> int:
        """Patches per image side."""
        return self.image_size // self.patch_size
