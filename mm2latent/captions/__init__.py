"""CelebA-Dialog-style templated captions of a dataset's samples, from their attributes."""
