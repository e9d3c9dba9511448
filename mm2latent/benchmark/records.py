"""The benchmark's records: what its steps hand each other and what summary.json holds.

Read by attribute everywhere (tasks, flows, CLI, lineage); `to_json` / `from_json` keep the keys
the files have always had, so runs written by earlier versions still read (chunk JSON, the CMMD
reference cache's metadata, summary.json; run.json is config.RunIdentity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mm2latent.benchmark.config import RunIdentity
from mm2latent.json_records import JsonRecord, fields_of


@dataclass(frozen=True)
class StartedRun:
    """What `start` checked and recorded."""

    pairs: int  # pairs selected (the same for every model)
    candidates: int  # annotated ids with a caption, drawn from
    missing_captions: tuple[int, ...]  # annotated ids without a caption (skipped)
    models: tuple[str, ...]  # tags of the models to evaluate


@dataclass(frozen=True)
class ReferenceMeta(JsonRecord):
    """Metadata of cached CMMD reference embeddings (parquet schema metadata of the cache)."""

    model: str  # embedding model id (weights name or seeded id, with the image limit)
    sigma: float  # RBF bandwidth the kernel sum was computed with
    kernel_total: float  # sum of the reference's own kernel matrix (diagonal included)
    count: int  # number of kernel entries summed (N * N)
    images: int  # N, reference images embedded
    source: str  # the reference's URL


@dataclass(frozen=True)
class CmmdReference:
    """What the reference step hands to `finish`: the metadata and where the embeddings are."""

    meta: ReferenceMeta
    url: str  # the cache file holding the embeddings


@dataclass(frozen=True)
class ChunkLatency(JsonRecord):
    """A finished chunk's timing, chunks/<model>/chunk-NNNNNN.json (the chunk's marker)."""

    seconds: dict[str, float]  # evaluate.STAGES + "metrics", summed over the chunk
    pairs: int  # pairs in the chunk


@dataclass(frozen=True)
class Switches(JsonRecord):
    """A model's Table 2 / 3 settings (None where its record does not say)."""

    pteg: bool | None  # trained on pseudo text embeddings
    use_batchnorm: bool | None
    dropout: float | None
    depth: int | None  # MappingNet layers


@dataclass(frozen=True)
class LatencyMs(JsonRecord):
    """Milliseconds per generated image and stage (metric networks excluded)."""

    text_encode: float
    spatial_encode: float
    mapping_net: float
    generator: float
    total: float


@dataclass(frozen=True)
class ModelSummary(JsonRecord):
    """One model's row of summary.json: mean metrics over the pairs, latency and what it is."""

    NESTED: ClassVar[dict[str, Any]] = {"latency_ms": LatencyMs, "switches": Switches}

    model: str  # tag: "mapping-mask-v3" or "released"
    label: str  # its row name in report.md
    pairs: int
    clip_score: float  # 100 x cosine, mean over pairs
    mask_accuracy: float  # % of matching pixels, mean over pairs
    cmmd: float  # 1000 x MMD^2 against the reference
    latency_ms: LatencyMs
    images_per_s: float  # NaN when no time was measured
    metric_seconds: float  # seconds spent in the metric networks
    switches: Switches
    weights: tuple[str, ...]  # released weights names; () for models trained here


@dataclass(frozen=True)
class Conventions(JsonRecord):
    """What the report's conventions name: metric models, sizes and the CMMD reference."""

    clip: str  # CLIP-score model
    size: int  # side at which masks are compared, pixels
    parser: str  # mask-accuracy parser
    sigma: float  # CMMD bandwidth
    cmmd: str  # CMMD embedding model
    ref_n: int  # reference images
    ref: str  # reference URL
    farl: str  # caption encoder of every row


@dataclass(frozen=True)
class RunInfo(JsonRecord):
    """The run's shared settings (summary.json's `run`)."""

    NESTED: ClassVar[dict[str, Any]] = {"conventions": Conventions, "config": RunIdentity}

    pairs: int
    seed: int
    caption_field: str
    missing_captions: tuple[int, ...]
    makes_faces: bool  # False: seeded networks, the numbers mean nothing
    ablation: bool  # Tables 2 and 3 were asked for
    conventions: Conventions
    config: RunIdentity  # without models: `config.models` is the models folder


@dataclass(frozen=True)
class BenchmarkSummary:  # `models` is a list of records: its own JSON pair
    """summary.json: the run's settings and one row per model."""

    run: RunInfo
    models: tuple[ModelSummary, ...]

    def row(self, tag: str) -> ModelSummary:
        """The row of model `tag`; KeyError if it was not evaluated."""
        for model in self.models:
            if model.model == tag:
                return model
        raise KeyError(f"{tag} is not in this summary (models: "
                       f"{', '.join(m.model for m in self.models)})")

    def to_json(self) -> dict[str, Any]:
        """The object summary.json holds."""
        return {"run": self.run.to_json(), "models": [m.to_json() for m in self.models]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BenchmarkSummary:
        """Read summary.json."""
        values = fields_of(["run", "models"], data, "BenchmarkSummary")
        return cls(RunInfo.from_json(values["run"]),
                   tuple(ModelSummary.from_json(m) for m in values["models"]))


@dataclass(frozen=True)
class FinishedBenchmark:
    """What a finished run returns: its summary, where its files are and the report's text."""

    summary: BenchmarkSummary
    out: str  # folder of report.md, results.parquet, grid.png, summary.json
    report: str  # report.md
