"""Files of a benchmark run under --out, written atomically.

    run.json                      the settings that decide the results (a rerun must match)
    examples/<model>/<id>.png     generated images of the grid's pairs
    pairs.parquet                 the selected pairs: image_id, caption, noise_seed
    chunks/<model>/chunk-NNNNNN.parquet   per-pair results of one chunk (+ CMMD embeddings)
    chunks/<model>/chunk-NNNNNN.json      its latency; written last = the chunk is complete
    results.parquet, report.md, grid.png, summary.json   assembled at the end; summary.json
                                  is written last: it marks the run finished

Parquet is written with fixed options so the same results give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mm2latent_core.errors import ConfigError
from storage.atomic import atomic_write_bytes
from storage.fs import join, open_fs

RUN_FILE = "run.json"
PAIRS_FILE = "pairs.parquet"
RESULTS_FILE = "results.parquet"
SUMMARY_FILE = "summary.json"
EMBEDDING = "cmmd_embedding"
_OPTIONS = dict(compression="zstd", compression_level=3, write_statistics=True,
                data_page_version="1.0", version="2.6", store_schema=True)


def parquet_bytes(columns: Mapping[str, object]) -> bytes:
    """Parquet bytes of {name: array}; 2-D float arrays become fixed-size float32 lists."""
    arrays = {}
    for name, values in columns.items():
        array = np.asarray(values) if not isinstance(values, list) else values
        if isinstance(array, np.ndarray) and array.ndim == 2:
            flat = pa.array(np.ascontiguousarray(array, np.float32).reshape(-1))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, array.shape[1])
        else:
            arrays[name] = pa.array(array)
    return table_bytes(pa.table(arrays))


def table_bytes(table: pa.Table) -> bytes:
    """Parquet bytes of a table with the fixed writer options."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **_OPTIONS)
    return buffer.getvalue()


def read_parquet(url: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A parquet file read through fsspec."""
    fs, path = open_fs(url)
    return pq.read_table(io.BytesIO(fs.cat_file(path)), columns=list(columns) if columns else None)


def check_run(out: str, identity: dict) -> bool:
    """True if `out` already holds this run; ConfigError if it holds a different one."""
    fs, path = open_fs(join(out, RUN_FILE))
    if not fs.exists(path):
        return False
    existing = json.loads(fs.cat_file(path))
    if existing != json.loads(json.dumps(identity)):
        changed = sorted(k for k in set(existing) | set(identity)
                         if existing.get(k) != json.loads(json.dumps(identity)).get(k))
        raise ConfigError(f"{out} holds a benchmark run with other settings ({', '.join(changed)} "
                          "differ). Fix: use a new --out, or delete that folder to start over.")
    return True


def write_run(out: str, identity: dict, pairs: Mapping[str, object]) -> None:
    """pairs.parquet, then run.json (the run's marker)."""
    atomic_write_bytes(join(out, PAIRS_FILE), parquet_bytes(pairs))
    atomic_write_bytes(join(out, RUN_FILE), (json.dumps(identity, indent=2, sort_keys=True)
                                             + "\n").encode())


def chunk_url(out: str, model: str, chunk: int, suffix: str) -> str:
    """URL of one chunk's file ('parquet' or 'json')."""
    return join(out, "chunks", model, f"chunk-{chunk:06d}.{suffix}")


def chunk_done(out: str, model: str, chunk: int) -> bool:
    """Whether the chunk's marker (its latency JSON) exists."""
    fs, path = open_fs(chunk_url(out, model, chunk, "json"))
    return fs.exists(path)


def write_chunk(out: str, model: str, chunk: int, columns: Mapping[str, object],
                latency: dict) -> None:
    """The chunk's parquet, then its latency JSON (completion marker)."""
    atomic_write_bytes(chunk_url(out, model, chunk, "parquet"), parquet_bytes(columns))
    atomic_write_bytes(chunk_url(out, model, chunk, "json"),
                       json.dumps(latency, sort_keys=True).encode())


def read_chunk_latency(out: str, model: str, chunk: int) -> dict:
    """The latency JSON of a complete chunk."""
    fs, path = open_fs(chunk_url(out, model, chunk, "json"))
    return json.loads(fs.cat_file(path))


def write_bytes(out: str, name: str, data: bytes) -> str:
    """Write one output file under `out` atomically; its URL."""
    url = join(out, name)
    atomic_write_bytes(url, data)
    return url


def read_png(url: str) -> np.ndarray:
    """An image file as a numpy array (H, W[, C])."""
    fs, path = open_fs(url)
    with Image.open(io.BytesIO(fs.cat_file(path))) as image:
        return np.asarray(image)


def read_summary(out: str) -> dict | None:
    """summary.json of a finished run (written last by the run), None if it is not there."""
    fs, path = open_fs(join(out, SUMMARY_FILE))
    if not fs.exists(path):
        return None
    return json.loads(fs.cat_file(path))


def pairs_digest(out: str) -> str:
    """sha256 of pairs.parquet (written with fixed options: the same pairs give the same digest)."""
    fs, path = open_fs(join(out, PAIRS_FILE))
    return hashlib.sha256(fs.cat_file(path)).hexdigest()
