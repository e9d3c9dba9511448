"""Balance math: joint cells of binary / binned attributes, quotas per cell, and the seeded choice.

Quotas are a weighted water-filling: every cell gets n x its target share, except that a cell
holding fewer samples gives all it has and the shortfall is shared by the others in proportion
to their shares (repeated until no cell is short); integer parts by largest remainder, ties by
cell order. So a uniform target stays exactly uniform whenever every cell can fill its share,
and otherwise is as even as the data allow.

Which samples a cell keeps: the ones with the smallest key derive_seed(seed, 'curate', index),
a function of the source index alone, so the choice never depends on shard order, shard size or
worker count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mm2latent.curation.spec import Balance, BalanceAttribute
from mm2latent.seeding import derive_seed
from mm2latent_core.errors import DatasetError

NO_CELL = -1  # a sample outside every cell (NaN, or outside the bins' range)


def attribute_cells(attribute: BalanceAttribute, values: np.ndarray) -> np.ndarray:
    """(N,) int: the cell of each value within this attribute, NO_CELL where it has none."""
    values = np.asarray(values, dtype=np.float64)
    cells = np.full(len(values), NO_CELL, dtype=np.int64)
    finite = np.isfinite(values)
    if attribute.threshold is not None:
        cells[finite] = (values[finite] >= attribute.threshold).astype(np.int64)
        return cells
    edges = np.asarray(attribute.bins, dtype=np.float64)
    inside = finite & (values >= edges[0]) & (values <= edges[-1])
    # bin j holds [e_j, e_j+1); the last bin also holds its right edge
    bins = np.searchsorted(edges, values[inside], side="right") - 1
    cells[inside] = np.minimum(bins, len(edges) - 2)
    return cells


def joint_cells(balance: Balance, columns: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) int: the joint cell (index into balance.cell_keys()) of each sample, or NO_CELL.

    Args:
        balance: the target.
        columns: attribute column -> (N,) values, for every column the target names.
    """
    joint: np.ndarray | None = None
    for attribute in balance.attributes.values():
        cells = attribute_cells(attribute, columns[attribute.column])
        size = len(attribute.cell_labels())
        if joint is None:
            joint = cells
        else:  # first attribute slowest, as Balance.cell_keys orders them
            joint = np.where((joint == NO_CELL) | (cells == NO_CELL), NO_CELL, joint * size + cells)
    assert joint is not None  # Balance requires at least one attribute
    return joint


def quotas(available: Sequence[int], weights: Sequence[float], n: int | None) -> list[int]:
    """Samples to take from each cell: `n` in all, shared by `weights` as far as cells allow.

    Args:
        available: samples in each cell.
        weights: target share of each cell (sums to 1; 0 = take none).
        n: total to select; None = the largest total that keeps the shares exact.

    Raises:
        DatasetError: fewer than `n` samples in the cells with a share, or (n None) a cell with a
            share is empty.
    """
    available, weights = list(available), list(weights)
    eligible = [i for i, w in enumerate(weights) if w > 0]
    if n is None:
        empty = [i for i in eligible if available[i] == 0]
        if empty:
            raise DatasetError(f"balance cell(s) {empty} have no samples, so no exactly balanced "
                               "selection exists. Fix: give --n to fill the other cells as evenly "
                               "as the data allow, or change the bins / proportions.")
        level = min(available[i] / weights[i] for i in eligible)
        return [math.floor(level * w + 1e-9) if w > 0 else 0 for w in weights]
    total = sum(available[i] for i in eligible)
    if total < n:
        raise DatasetError(f"only {total} sample(s) pass the filters into the balance cells, fewer "
                           f"than --n {n}. Fix: lower --n, or relax the filters or the bins.")
    out = [0] * len(weights)
    active, remaining = list(eligible), n
    ideal: dict[int, float] = {}
    while active:
        share = sum(weights[i] for i in active)
        ideal = {i: remaining * weights[i] / share for i in active}
        short = [i for i in active if available[i] <= ideal[i]]
        if not short:
            break
        for i in short:  # a short cell gives everything; the rest share its shortfall
            out[i] = available[i]
            remaining -= available[i]
        active = [i for i in active if i not in short]
    floors = {i: math.floor(ideal[i]) for i in active}
    leftover = remaining - sum(floors.values())
    # largest remainder first, ties by cell order; a cell here has available > ideal >= floor
    for i in sorted(active, key=lambda i: (-(ideal[i] - floors[i]), i))[:leftover]:
        floors[i] += 1
    for i, count in floors.items():
        out[i] = count
    return out


def draw_keys(indices: np.ndarray, seed: int) -> np.ndarray:
    """(N,) uint64: each source index's draw key (smaller = kept first)."""
    return np.fromiter((derive_seed(seed, "curate", int(i)) for i in indices), dtype=np.uint64,
                       count=len(indices))


def choose(indices: np.ndarray, cells: np.ndarray, counts: Sequence[int], seed: int) -> np.ndarray:
    """Source indices kept: from each cell c the counts[c] samples with the smallest draw keys.

    Args:
        indices: (N,) source indices of the candidates.
        cells: (N,) their cells (NO_CELL = never chosen).
        counts: samples to keep per cell (quotas()).
        seed: the curation seed.

    Returns:
        the chosen source indices, ascending.
    """
    keys = draw_keys(indices, seed)
    chosen = []
    for cell, count in enumerate(counts):
        members = np.flatnonzero(cells == cell)
        order = np.lexsort((indices[members], keys[members]))  # by key, then index (never tied)
        chosen.append(indices[members[order[:count]]])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
