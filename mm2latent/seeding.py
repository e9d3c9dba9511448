"""Deterministic construction and sampling helpers.

Presets that need no weight files (`tiny`) initialise every network from a seed. Building
inside `seeded_init(seed)` makes the parameters depend only on the seed and the config, and
leaves the caller's global RNG state exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded to `seed`, restoring the previous state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple of parts (e.g. (seed, index) or (seed, "parser")).

    Hash-based so that seeds for different purposes never collide by arithmetic accident
    (seed + i for one stream equal to seed' + j for another).
    """
    text = "\x1f".join(repr(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1
