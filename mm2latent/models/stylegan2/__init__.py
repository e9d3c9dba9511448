"""StyleGAN2 generator with NVIDIA stylegan2-ada-pytorch parameter names."""

from mm2latent.models.stylegan2.generator import Generator, GeneratorCfg

__all__ = ["Generator", "GeneratorCfg"]
