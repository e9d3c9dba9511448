"""Synthetic multimodal dataset generation: StyleGAN2 samples and their annotations."""
