"""Deterministic (mask, caption, noise seed) pairs shared by every model of one benchmark run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mm2latent_core.errors import DatasetError
from mm2latent.seeding import derive_seed


@dataclass(frozen=True)
class Pair:
    """One evaluation input: CelebAMask-HQ id, its caption and the generator's noise seed."""

    image_id: int  # CelebA-HQ / CelebAMask-HQ index k
    caption: str  # the chosen CelebA-Dialog caption of image k
    noise_seed: int  # seed of the StyleGAN2 noise of this pair's image (63-bit)


@dataclass(frozen=True)
class PairSelection:
    """The chosen pairs plus what was left out and why (reported in the summary)."""

    pairs: tuple[Pair, ...]  # sorted by image_id
    missing_captions: tuple[int, ...]  # ids with a mask but no caption: skipped
    candidates: int  # ids with both a mask and a caption


def select_pairs(mask_ids: Sequence[int], captions: Mapping[int, str], n_pairs: int,
                 seed: int) -> PairSelection:
    """n_pairs ids drawn without replacement from those with a mask and a caption.

    The draw depends only on (seed, the set of usable ids), so every model and every rerun sees
    the same pairs. n_pairs larger than the usable set takes all of it.

    Args:
        mask_ids: ids that have CelebAMask-HQ annotations.
        captions: {id: caption}.
        n_pairs: how many pairs; >= 1.
        seed: the benchmark seed.
    """
    if n_pairs < 1:
        raise DatasetError(f"n_pairs={n_pairs}; ask for at least one pair.")
    ids = sorted(set(mask_ids))
    missing = tuple(i for i in ids if i not in captions)
    usable = np.array([i for i in ids if i in captions], dtype=np.int64)
    if usable.size == 0:
        raise DatasetError(f"empty pair set: {len(ids)} annotated mask(s), none with a caption "
                           f"({len(missing)} without). Fix: check that --captions belongs to the "
                           "same CelebA-HQ ids as --celebamask.")
    order = np.random.default_rng(derive_seed("benchmark-pairs", seed)).permutation(usable.size)
    chosen = sorted(int(i) for i in usable[order[:n_pairs]])
    pairs = tuple(Pair(i, captions[i], derive_seed("benchmark-noise", seed, i)) for i in chosen)
    return PairSelection(pairs=pairs, missing_captions=missing, candidates=int(usable.size))
