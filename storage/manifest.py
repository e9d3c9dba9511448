"""Per-shard parquet manifest: one row per sample, including failed ones.

Columns (every field also carries a `description` in the schema metadata):
- key (string): tar key of the sample, the 9-digit zero-padded global index.
- index (int64): global sample index; rows are stored sorted by it.
- shard (int32): index of the shard that holds the sample.
- seed (int64): per-sample seed (mm2latent.seeding.derive_seed, 63 bits).
- status (string): 'ok' or 'failed'.
- error (string, null when ok): the failure message ('<ExceptionType>: <message>').
- image_ext (string, null when failed): 'jpg' or 'png', the extension of the image member.
- <member>_bytes (int64) / <member>_sha256 (string, hex) for every member of the modality
  registry the caller passes (the project's: image, mask, sketch, w, flame, farl) and json:
  payload size and digest of `<key>.<ext>` in the tar.
- w, flame, farl (fixed_size_list<float32>[D]): the small vectors, duplicated from the tar so
  that training on embeddings reads only parquet. D comes from the dataset (dataset.json).

A failed sample writes NO members to the tar (readers of the tar only ever see complete
samples); its row has status 'failed', the error, and nulls in image_ext, every member column
and every vector column.

Parquet bytes are deterministic for identical rows: pyarrow writes no timestamps, and every
writer option that affects the bytes is fixed below.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mm2latent_core.errors import DatasetError
from storage.atomic import atomic_write_bytes
from storage.fs import open_fs
from storage.shard_writer import MemberInfo

MANIFEST_VERSION = "1"
STATUS_OK = "ok"
STATUS_FAILED = "failed"
# Member name -> tar extensions it may have (first present wins): the layout of the member
# columns, ModalityRegistry.member_exts() of the caller's registry. Storage knows no modality
# names itself, so every writer takes the layout and the vector widths from its caller.
MemberLayout = Mapping[str, Sequence[str]]
IMAGE_EXTS = ("jpg", "png")
# Fixed writer options: changing any of these changes the bytes (and the stats sha256).
_PARQUET_OPTIONS = dict(
    compression="zstd",
    compression_level=3,
    use_dictionary=["status", "image_ext"],
    write_statistics=True,
    data_page_version="1.0",
    version="2.6",
    store_schema=True,
)
ROW_GROUP_SIZE = 1 << 16  # rows per row group; shards are smaller, so one group per file


def _field(name: str, type_: pa.DataType, nullable: bool, description: str) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


def manifest_schema(vector_dims: Mapping[str, int], layout: MemberLayout) -> pa.Schema:
    """The manifest schema for the given vector widths (name -> D).

    Args:
        vector_dims: fixed-size list width of each vector column, e.g. {'w': 512, ...}.
        layout: member name -> tar extensions, one pair of size/digest columns per member.
    """
    fields = [
        _field("key", pa.string(), False, "tar key: 9-digit zero-padded global index"),
        _field("index", pa.int64(), False, "global sample index"),
        _field("shard", pa.int32(), False, "index of the shard holding the sample"),
        _field("seed", pa.int64(), False, "per-sample seed (derive_seed, 63-bit)"),
        _field("status", pa.string(), False, "'ok' or 'failed'"),
        _field("error", pa.string(), True, "failure message; null when ok"),
        _field("image_ext", pa.string(), True, "'jpg' or 'png'; null when failed"),
    ]
    for member in layout:
        fields.append(_field(f"{member}_bytes", pa.int64(), True, f"{member} payload bytes"))
        fields.append(_field(f"{member}_sha256", pa.string(), True, f"{member} payload sha256"))
    for name, dim in vector_dims.items():
        # "element" is the Parquet-compliant item name; pyarrow renames "item" to it on write.
        vector = pa.list_(pa.field("element", pa.float32()), dim)
        fields.append(_field(name, vector, True, f"{name} vector ({dim})"))
    return pa.schema(fields, metadata={"mm2latent.manifest_version": MANIFEST_VERSION})


def ok_row(
    *,
    key: str,
    index: int,
    shard: int,
    seed: int,
    members: Mapping[str, MemberInfo],
    vectors: Mapping[str, np.ndarray],
    layout: MemberLayout,
) -> dict:
    """A manifest row for a written sample.

    Args:
        key, index, shard, seed: identity of the sample.
        members: tar extension -> MemberInfo, as in ShardResult.members[key].
        vectors: vector column name -> 1-D float array.
        layout: member name -> tar extensions (the manifest's member columns).
    """
    row: dict = dict(key=key, index=index, shard=shard, seed=seed, status=STATUS_OK, error=None)
    images = [ext for ext in IMAGE_EXTS if ext in members]
    if len(images) != 1:
        raise ValueError(f"sample {key!r}: expected one image member of {IMAGE_EXTS}, found {images}")
    row["image_ext"] = images[0]
    for member, exts in layout.items():
        info = next((members[e] for e in exts if e in members), None)
        row[f"{member}_bytes"] = None if info is None else info.size
        row[f"{member}_sha256"] = None if info is None else info.sha256
    row.update(vectors)
    return row


def failed_row(*, key: str, index: int, shard: int, seed: int, error: str) -> dict:
    """A manifest row for a sample whose generation failed (no tar members)."""
    if not error:
        raise ValueError(f"sample {key!r}: a failed row needs a non-empty error message")
    return dict(key=key, index=index, shard=shard, seed=seed, status=STATUS_FAILED, error=error)


def _vector_column(rows: Sequence[Mapping], name: str, dim: int) -> pa.Array:
    """Stack one vector column into a FixedSizeListArray, null where the row has none."""
    flat = np.zeros((len(rows), dim), dtype=np.float32)  # (N, D)
    missing = np.zeros(len(rows), dtype=bool)
    for i, row in enumerate(rows):
        value = row.get(name)
        if value is None:
            missing[i] = True
            continue
        value = np.asarray(value, dtype=np.float32)
        if value.shape != (dim,):
            raise ValueError(
                f"sample {row.get('key')!r}: column {name!r} has shape {value.shape}, expected ({dim},)"
            )
        flat[i] = value
        if row.get("status") == STATUS_OK and not np.isfinite(value).all():
            raise ValueError(f"sample {row.get('key')!r}: column {name!r} has non-finite values")
    return pa.FixedSizeListArray.from_arrays(
        pa.array(flat.reshape(-1)), dim, mask=pa.array(missing)  # flat: (N * D,)
    )


def rows_to_table(rows: Sequence[Mapping], vector_dims: Mapping[str, int],
                  layout: MemberLayout) -> pa.Table:
    """Validate rows and build the manifest table, sorted by index."""
    schema = manifest_schema(vector_dims, layout)
    rows = sorted(rows, key=lambda r: r["index"])
    for row in rows:
        if row.get("status") not in (STATUS_OK, STATUS_FAILED):
            raise ValueError(f"sample {row.get('key')!r}: status must be 'ok' or 'failed'")
        if row["status"] == STATUS_OK and any(row.get(n) is None for n in vector_dims):
            absent = [n for n in vector_dims if row.get(n) is None]
            raise ValueError(f"sample {row['key']!r}: status 'ok' but no vector(s) {absent}")
    columns = []
    for f in schema:
        if f.name in vector_dims:
            columns.append(_vector_column(rows, f.name, vector_dims[f.name]))
        else:
            columns.append(pa.array([row.get(f.name) for row in rows], type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def manifest_bytes(table: pa.Table) -> bytes:
    """Serialise a manifest table to parquet with fixed options (deterministic bytes)."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=ROW_GROUP_SIZE, **_PARQUET_OPTIONS)
    return buffer.getvalue()


def write_manifest(
    url: str, rows: Sequence[Mapping], vector_dims: Mapping[str, int], layout: MemberLayout,
) -> MemberInfo:
    """Write the manifest parquet atomically; return its size and sha256.

    Args:
        url: destination, e.g. `.../shard-000000.parquet`.
        rows: dicts from `ok_row` / `failed_row`, in any order (stored sorted by index).
        vector_dims: vector column widths; must match the dataset's.
        layout: member name -> tar extensions (the member columns).
    """
    data = manifest_bytes(rows_to_table(rows, vector_dims, layout))
    atomic_write_bytes(url, data)
    return MemberInfo(size=len(data), sha256=hashlib.sha256(data).hexdigest())


def read_manifest(url: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a manifest parquet (optionally only some columns).

    Args:
        url: the `.parquet` file.
        columns: column names to read; None reads all.

    Raises:
        DatasetError: the file is missing, not parquet, or lacks a requested column.
    """
    fs, path = open_fs(url)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_table(f, columns=list(columns) if columns is not None else None)
    except FileNotFoundError as e:
        raise DatasetError(f"{url}: manifest not found. Fix: re-run the data flow to rebuild the shard.") from e
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(
            f"{url}: unreadable manifest ({e}). Fix: delete the shard's .stats.json and re-run "
            "the data flow to rebuild it."
        ) from e


def read_manifest_schema(url: str) -> pa.Schema:
    """The schema of a manifest parquet, read from its footer only."""
    fs, path = open_fs(url)
    try:
        with fs.open(path, "rb") as f:
            return pq.read_schema(f)
    except (FileNotFoundError, pa.ArrowException) as e:
        raise DatasetError(f"{url}: cannot read the manifest schema ({e}). Fix: re-run synth-data.") from e
