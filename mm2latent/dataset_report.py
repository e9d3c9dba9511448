"""Read-only summaries of a synth-data dataset: counts, failures, per-modality stats, contact sheet.

Everything is read through `storage/` (dataset.json, stats markers, parquet manifests, the
WebDataset reader), checked as every reader checks (storage/shard_check.py): dataset.json,
stats files and sizes first, then the sha256 of each parquet and tar right before it is read. Vector statistics stream over every complete shard's parquet (vectors only,
one shard in memory at a time); image, mask and sketch statistics decode only the first
`max_decoded` samples of the tars, so a report on a large dataset stays fast.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mm2latent_core.errors import DatasetError
from mm2latent.modalities.registry import default_registry
from mm2latent_core.modalities.spec import ModalityRegistry, ModalitySpec
from storage.dataset_index import shard_url
from storage.manifest import STATUS_FAILED, read_manifest, read_manifest_schema
from storage.readers import iter_samples, read_shard_manifest
from storage.shard_check import check_shard_files, checked_index, readable_shards

logger = logging.getLogger(__name__)

MAX_ERRORS = 5  # failure messages quoted in a report
MAX_DECODED = 64  # samples whose tar members (image, mask, sketch, ...) are decoded for statistics
GUTTER = 2  # px of grey between the tiles of a contact sheet
GUTTER_VALUE = 128  # grey level of the gutters


@dataclass
class VectorStats:
    """Statistics of one manifest vector column over the 'ok' rows."""

    count: int  # rows with a value
    dim: int  # vector width
    norm_mean: float  # mean L2 norm of a row
    norm_std: float  # standard deviation of the L2 norm across rows
    value_mean: float  # mean of every element
    value_std: float  # standard deviation of every element


@dataclass
class DatasetReport:
    """What `mm2latent dataset inspect` prints; every field is plain JSON-able data."""

    url: str  # dataset root
    preset: str  # preset the dataset was made with
    parameters: dict  # generation parameters recorded in dataset.json
    weights: dict[str, str]  # component -> weights digest (or seeded:<seed>)
    shards_planned: int  # shards listed in dataset.json
    shards_complete: list[int]  # indices with a stats marker
    shards_incomplete: list[int]  # planned indices without one (rerun synth-data to finish)
    samples: int  # manifest rows in complete shards
    ok: int  # rows with status 'ok'
    failed: int  # rows with status 'failed'
    error_kinds: dict[str, int]  # error type (text before the first ':') -> count
    errors: list[tuple[str, str]]  # first MAX_ERRORS (key, error) of failed rows, index order
    vectors: dict[str, VectorStats]  # manifest vector column -> stats ('ok' rows, all shards)
    decoded_samples: int  # samples decoded from the tars for the statistics below
    # modality -> its ModalityStats result over the decoded samples (absent: not stored)
    decoded: dict[str, Any] = field(default_factory=dict)

    @property
    def image_mean(self) -> list[float] | None:
        """Per-channel RGB mean in [0, 1]; None = no image decoded."""
        return self.decoded.get("image")

    @property
    def mask_class_frequency(self) -> dict[str, float]:
        """CelebAMask-HQ class -> pixel share; {} = no mask decoded."""
        return self.decoded.get("mask") or {}

    @property
    def sketch_edge_density(self) -> float | None:
        """Share of edge pixels; None = no sketch member."""
        return self.decoded.get("sketch")


def _error_kind(message: str) -> str:
    """'NoFaceFound' for 'NoFaceFound: ...'; the whole message when it has no type prefix."""
    head, sep, _ = message.partition(":")
    return head.strip() if sep else message.strip()


class _VectorAccumulator:
    """Running sums for VectorStats, in float64 so that long datasets do not lose precision."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.count = 0
        self.norm_sum = self.norm_sq_sum = self.value_sum = self.value_sq_sum = 0.0

    def add(self, vectors: np.ndarray) -> None:
        """Add a (N, D) float array of rows."""
        v = vectors.astype(np.float64)  # (N, D)
        norms = np.linalg.norm(v, axis=1)  # (N,)
        self.count += v.shape[0]
        self.norm_sum += float(norms.sum())
        self.norm_sq_sum += float((norms**2).sum())
        self.value_sum += float(v.sum())
        self.value_sq_sum += float((v**2).sum())

    def result(self) -> VectorStats:
        """The statistics so far (zeros when no row was added)."""
        n, elements = max(self.count, 1), max(self.count * self.dim, 1)
        norm_mean, value_mean = self.norm_sum / n, self.value_sum / elements
        return VectorStats(
            count=self.count, dim=self.dim, norm_mean=norm_mean,
            norm_std=float(np.sqrt(max(self.norm_sq_sum / n - norm_mean**2, 0.0))),
            value_mean=value_mean,
            value_std=float(np.sqrt(max(self.value_sq_sum / elements - value_mean**2, 0.0))))


def _vector_rows(table: pa.Table, name: str) -> np.ndarray:
    """(N, D) float32 values of a fixed-size-list column, null rows dropped."""
    column = table[name].combine_chunks()
    column = column.filter(pc.is_valid(column))
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), dim)  # (N, D)


def _scan_manifests(url: str, shards: Sequence[int], vector_names: Sequence[str]) -> dict:
    """Counts, failures and vector statistics over the manifests of `shards`, one at a time."""
    counts = Counter()
    kinds: Counter[str] = Counter()
    errors: list[tuple[str, str]] = []
    acc: dict[str, _VectorAccumulator] = {}
    for shard in shards:
        table = read_shard_manifest(url, shard, ["key", "status", "error", *vector_names])
        failed = table.filter(pc.equal(table["status"], STATUS_FAILED))
        counts["samples"] += table.num_rows
        counts["failed"] += failed.num_rows
        for key, message in zip(failed["key"].to_pylist(), failed["error"].to_pylist()):
            kinds[_error_kind(message or "")] += 1
            if len(errors) < MAX_ERRORS:
                errors.append((key, message))
        for name in vector_names:
            rows = _vector_rows(table, name)
            acc.setdefault(name, _VectorAccumulator(table[name].type.list_size)).add(rows)
    return {"samples": counts["samples"], "failed": counts["failed"], "error_kinds": dict(kinds),
            "errors": errors, "vectors": {n: a.result() for n, a in acc.items()}}


def _present_tar_modalities(url: str, shards: Sequence[int], names: Sequence[str],
                            check: bool = True) -> list[str]:
    """Which of `names` the dataset stores, from the first shard with an ok row.

    Read from the manifests' *_bytes columns (null where a member is absent); [] if no complete
    shard has an ok row. A name without a column (a modality the dataset predates) is absent.
    `check`: sha256-check each parquet first (False: the caller just did).
    """
    for shard in shards:
        if check:
            check_shard_files(url, [shard], ("parquet",))
        url_ = shard_url(url, shard, "parquet")
        columns = set(read_manifest_schema(url_).names)
        names = [m for m in names if f"{m}_bytes" in columns]
        table = read_manifest(url_, columns=["status", *(f"{m}_bytes" for m in names)])
        ok = table.filter(pc.not_equal(table["status"], STATUS_FAILED))
        if ok.num_rows:
            return [m for m in names if ok[f"{m}_bytes"].null_count < ok.num_rows]
    return []


def _first_samples(url: str, modalities: Sequence[str], limit: int,
                   registry: ModalityRegistry) -> Iterator[dict]:
    """The first `limit` decoded samples of the complete shards, in index order."""
    pipeline = iter(iter_samples(url, modalities=tuple(modalities), split_by_node=False,
                                 split_by_worker=False, registry=registry))
    try:
        yield from itertools.islice(pipeline, limit)
    finally:
        close = getattr(pipeline, "close", None)
        if close is not None:
            close()  # releases the open shard stream of the reader's generator


def _decoded_stats(url: str, specs: Sequence[ModalitySpec], limit: int,
                   registry: ModalityRegistry) -> tuple[int, dict[str, Any]]:
    """(samples decoded, modality -> stats result) over the first `limit` samples."""
    accumulators = {s.name: s.stats() for s in specs}
    n = 0
    for sample in _first_samples(url, list(accumulators), limit, registry):
        n += 1
        for name, acc in accumulators.items():
            acc.add(sample[name])
    return n, {name: acc.result() for name, acc in accumulators.items()}


def verify_dataset(url: str, rehash: bool = True) -> list[int]:
    """Check every complete shard's tar and parquet against its stats file.

    Args:
        url: dataset root.
        rehash: recompute the sha256 digests (reads everything); False = compare sizes only.

    Returns the verified shard indices; DatasetError names every damaged shard and why.
    """
    shards = readable_shards(url)  # dataset.json, stats files, sizes
    if rehash:
        check_shard_files(url, shards)
    return shards


def inspect_dataset(url: str, max_decoded: int = MAX_DECODED,
                    registry: ModalityRegistry | None = None) -> DatasetReport:
    """Counts, failures and per-modality statistics of the dataset at `url`.

    Args:
        url: dataset root (local path, memory://, s3://...).
        max_decoded: samples whose tar members are decoded for the modalities' statistics.
        registry: the modalities (their decoders and statistics); None = default_registry().
    """
    registry = registry or default_registry()
    if max_decoded < 0:
        raise ValueError(f"max_decoded must be >= 0, got {max_decoded}")
    index = checked_index(url)  # DatasetError with the fix when absent or edited
    planned = len(index.shards)
    done = readable_shards(url)
    done_set = set(done)
    report = DatasetReport(
        url=url, preset=index.preset, parameters=dict(index.parameters), weights=dict(index.weights),
        shards_planned=planned, shards_complete=done,
        shards_incomplete=[i for i in range(planned) if i not in done_set],
        samples=0, ok=0, failed=0, error_kinds={}, errors=[], vectors={}, decoded_samples=0)
    if not done:
        return report
    schema = read_manifest_schema(shard_url(url, done[0], "parquet"))
    vector_names = [n for n in index.vector_dims if n in schema.names]
    scan = _scan_manifests(url, done, vector_names)
    report.samples, report.failed = scan["samples"], scan["failed"]
    report.ok = report.samples - report.failed
    report.error_kinds, report.errors, report.vectors = scan["error_kinds"], scan["errors"], scan["vectors"]
    with_stats = [s.name for s in registry if s.stats is not None]
    present = [registry.get(m) for m in _present_tar_modalities(url, done, with_stats, check=False)]
    if report.ok and present and max_decoded:
        report.decoded_samples, report.decoded = _decoded_stats(url, present, max_decoded, registry)
    return report


def _tile_rgb(sample: dict, spec: ModalitySpec, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 picture of one member; black when the dataset lacks that modality."""
    if spec.name not in sample:
        return np.zeros((*size, 3), dtype=np.uint8)
    return spec.tile(sample[spec.name])  # (H, W, 3)


def contact_sheet(url: str, n_rows: int = 8, registry: ModalityRegistry | None = None) -> np.ndarray:
    """(H, W, 3) uint8 sheet: one ok sample per row, a tile per modality that has one.

    Rows are the first `n_rows` ok samples in index order (fewer if the dataset has fewer);
    tiles are separated by GUTTER grey pixels; a modality the dataset lacks is a black tile.

    Args:
        url: dataset root.
        n_rows: samples to show (>= 1).
        registry: the modalities (default: image | colourised mask | sketch).
    """
    registry = registry or default_registry()
    tiled = [s for s in registry if s.tile is not None]
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    done = readable_shards(url)  # DatasetError when not a dataset, edited or damaged
    if not done:
        raise DatasetError(f"{url}: no complete shards to draw. Fix: run synth-data (or re-run it to finish).")
    present = _present_tar_modalities(url, done, [s.name for s in tiled])
    if "image" not in present:
        raise DatasetError(f"{url}: no complete shard holds an ok sample to draw (every sample "
                           "failed; `mm2latent dataset inspect` lists the errors).")
    samples = list(_first_samples(url, present, n_rows, registry))
    h, w = samples[0]["image"].shape[1:]
    rows = []
    for sample in samples:
        tiles = [_tile_rgb(sample, spec, (h, w)) for spec in tiled]
        rows.append(_join(tiles, axis=1))
    return _join(rows, axis=0)


def _join(pictures: Sequence[np.ndarray], axis: int) -> np.ndarray:
    """Concatenate (H, W, 3) pictures along `axis` with GUTTER grey pixels between them."""
    parts = []
    for i, picture in enumerate(pictures):
        if i:
            shape = list(picture.shape)
            shape[axis] = GUTTER
            parts.append(np.full(shape, GUTTER_VALUE, dtype=np.uint8))
        parts.append(picture)
    return np.concatenate(parts, axis=axis)


def _short(value: object, ends: int = 3) -> str:
    """A parameter for the terminal: a long list (a curated dataset's source_indices) as its
    length and first / last few items; --json keeps the whole list."""
    if not isinstance(value, (list, tuple)) or len(value) <= 2 * ends + 1:
        return str(value)
    items = [*map(str, value[:ends]), "...", *map(str, value[-ends:])]
    return f"[{len(value)} values: {', '.join(items)}]"


def render_report(report: DatasetReport, registry: ModalityRegistry | None = None) -> str:
    """Plain-text rendering of a DatasetReport for the terminal (`registry` renders its stats)."""
    registry = registry or default_registry()
    lines = [f"dataset {report.url}", f"  preset {report.preset}; parameters "
             + ", ".join(f"{k}={_short(v)}" for k, v in sorted(report.parameters.items()))]
    lines.append(f"  shards: {len(report.shards_complete)} complete of {report.shards_planned} planned")
    if report.shards_incomplete:
        shown = ", ".join(str(i) for i in report.shards_incomplete[:10])
        more = " ..." if len(report.shards_incomplete) > 10 else ""
        lines.append(f"  incomplete shards: {shown}{more} (re-run the same synth-data command to finish)")
    lines.append(f"  samples: {report.samples} ({report.ok} ok, {report.failed} failed)")
    for kind, count in sorted(report.error_kinds.items()):
        lines.append(f"    {kind}: {count}")
    for key, message in report.errors:
        lines.append(f"    {key}: {message}")
    for name, s in report.vectors.items():
        lines.append(f"  {name} ({s.dim}): |v| mean {s.norm_mean:.4g} std {s.norm_std:.4g}; "
                     f"values mean {s.value_mean:.4g} std {s.value_std:.4g} over {s.count} rows")
    lines.append(f"  decoded from tars: first {report.decoded_samples} samples")
    for name, result in report.decoded.items():
        line = registry.get(name).stats().render(result) if name in registry else None
        if line is not None:
            lines.append(f"  {line}")
    return "\n".join(lines)
