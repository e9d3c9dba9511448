"""Near-duplicates by cosine, found with a faiss inner-product index (exact range search).

Keep rule: walk the samples in ascending source index; a sample is kept unless an already
kept sample has cosine > max_cosine with it. So of every duplicate pair the lower index stays,
and a chain a~b~c with a !~ c keeps a and c.

faiss computes the candidate pairs (BLAS-blocked, multi-threaded, float32) with a small margin
below the threshold; each candidate pair's cosine is then recomputed in float64 from the two
input rows with a fixed summation order, so which pairs count does not depend on faiss's
threads or blocking. Memory: the index's unit-length float32 copy of the vectors (N x D x 4
bytes: 200 MiB at 100k x 512), the only full-size array made here, plus one block of queries
and their result lists; the caller's own vectors are read, never copied whole.
"""

from __future__ import annotations

import faiss
import numpy as np

CANDIDATE_MARGIN = 1e-3  # faiss's float32 cosines are within ~1e-6 of exact; this is generous
QUERY_BLOCK = 4096  # queries per range search: bounds the result lists held at once


def _unit(vectors: np.ndarray) -> np.ndarray:
    """(N, D) float64 rows scaled to unit length (zero rows stay zero: similar to nothing)."""
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _unit_index(vectors: np.ndarray) -> faiss.IndexFlatIP:
    """An inner-product index of the unit rows, filled one block at a time (no full-size temporaries)."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    for start in range(0, len(vectors), QUERY_BLOCK):
        index.add(np.ascontiguousarray(_unit(vectors[start:start + QUERY_BLOCK]), dtype=np.float32))
    return index


def near_duplicate_keep(vectors: np.ndarray, max_cosine: float) -> np.ndarray:
    """(N,) bool: which rows to keep, rows taken in order as ascending source indices.

    Args:
        vectors: (N, D) float vectors (w or FaRL), row order = ascending source index.
        max_cosine: pairs with cosine strictly above this are duplicates.
    """
    n = len(vectors)
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    index = _unit_index(vectors)
    removed = np.zeros(n, dtype=bool)
    for start in range(0, n, QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, n)
        queries = index.reconstruct_n(start, stop - start)  # (B, D) float32, the stored rows
        limits, _, neighbours = index.range_search(queries, max_cosine - CANDIDATE_MARGIN)
        for i in range(start, stop):
            if removed[i]:
                continue
            keep[i] = True
            found = neighbours[limits[i - start]:limits[i - start + 1]]
            later = found[found > i]
            if len(later) == 0:
                continue
            rows = _unit(vectors[np.concatenate([[i], later])])  # (1 + M, D) float64
            cosines = np.einsum("d,jd->j", rows[0], rows[1:])  # (M,) float64, fixed order
            removed[later[cosines > max_cosine]] = True
    return keep
