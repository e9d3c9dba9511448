"""MM2Latent: text-to-facial-image generation and editing in GANs with multimodal assistance.

The library: models, checkpoint loaders, losses, training and inference. It never imports
Prefect or typer; orchestration lives in the top-level `tasks/` and `flows/` packages.
"""

from mm2latent_core.errors import Mm2LatentError

__version__ = "0.2.0"  # 0.2: FaRL embeds the stored uint8 pixels exactly as Pillow resizes them

__all__ = ["Mm2LatentError", "__version__"]
