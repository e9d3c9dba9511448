"""The benchmark's configuration: one frozen dataclass, its identity (run.json), and the metric
networks per preset."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mm2latent.benchmark.captions import OVERALL, check_caption_field
from mm2latent.config_utils import require_positive
from mm2latent_core.errors import ConfigError
from mm2latent.json_records import fields_of, json_values
from mm2latent.presets import get_preset

# --parser choices -> weights registry names (used by presets whose metric nets load files)
PARSERS = {"bisenet": "bisenet.celebamask-79999", "facer": "facer.farl-celebm-448"}


@dataclass(frozen=True)
class MetricNetsCfg:
    """Which weights each metric network loads; None = a seeded random network (tiny preset)."""

    clip_score: str | None  # CLIP-score model (OpenAI CLIP ViT-B/32 in the paper)
    cmmd: str | None  # CMMD embedding model (OpenAI CLIP ViT-L/14@336)
    parser: str | None  # face parser of mask accuracy (BiSeNet CelebAMask-HQ)


# Keyed by whether the preset's generator has trained weights (PresetCfg.makes_faces): a
# seeded preset gets seeded metric networks, any preset with real weights the paper's ones.
METRIC_NETS = {
    False: MetricNetsCfg(None, None, None),
    True: MetricNetsCfg("clip.vit-b-32-openai", "clip.vit-l-14-336-openai", PARSERS["bisenet"]),
}


@dataclass(frozen=True)
class BenchmarkCfg:
    """One benchmark run: data roots, models, pair selection and metric settings."""

    celebamask: str  # CelebAMask-HQ root (holds CelebAMask-HQ-mask-anno/)
    captions: str  # CelebA-Dialog captions_hq.json
    reference: str  # CMMD reference: folder / fsspec URL of images, or a synth-data dataset
    out: str  # output folder (results.parquet, report.md, grid.png, chunks/)
    models: str = "runs/tiny"  # the --out of `mm2latent train`; registry at <models>/registry
    versions: tuple[str, ...] = ("latest",)  # "latest", "3", "v3", "mapping-mask-v3", or "released" (the preset's authors' models)
    preset: str = "tiny"  # preset the models were trained with
    n_pairs: int = 64  # pairs drawn from ids with a mask and a caption
    seed: int = 0  # pair selection and per-pair noise seeds
    caption_field: str = OVERALL  # "overall_caption" or an attribute (Bangs, Smiling, ...)
    chunk_size: int = 16  # pairs per resumable result chunk
    device: str = "cpu"  # torch device
    parser: str = "bisenet"  # mask-accuracy parser for presets with weights: bisenet or facer
    clip_model: str | None = None  # CLIP-score weights name; None = the preset's default
    cmmd_model: str | None = None  # CMMD weights name; None = the preset's default
    reference_limit: int | None = None  # use the first N reference images; None = all
    cache: str | None = None  # merged masks + reference embeddings; None = <out>/cache
    ablation: bool = False  # every registered mapping-mask version (+ "released" if listed); Tables 2 and 3
    eval_size: int = 512  # side at which masks are compared, pixels
    sigma: float = 10.0  # CMMD RBF bandwidth
    grid_rows: int = 4  # example pairs in grid.png

    def __post_init__(self) -> None:
        require_positive(self, ["n_pairs", "chunk_size", "eval_size", "grid_rows"])
        check_caption_field(self.caption_field)
        if self.parser not in PARSERS:
            raise ConfigError(f"parser={self.parser!r}; choose one of {', '.join(PARSERS)}.")
        if not self.versions and not self.ablation:
            raise ConfigError("no model versions given; pass 'latest' or a version number.")
        if self.reference_limit is not None and self.reference_limit < 1:
            raise ConfigError(f"reference_limit={self.reference_limit}; give >= 1 or None (all).")
        if not self.sigma > 0:
            raise ConfigError(f"sigma={self.sigma} must be positive (CMMD uses 10).")

    def metric_nets(self) -> MetricNetsCfg:
        """The metric networks' weights names for this preset and overrides."""
        base = METRIC_NETS[get_preset(self.preset).makes_faces]
        if base.parser is None:  # seeded preset: only overrides the user gave load files
            return MetricNetsCfg(self.clip_model, self.cmmd_model, None)
        return MetricNetsCfg(self.clip_model or base.clip_score, self.cmmd_model or base.cmmd,
                             PARSERS[self.parser])

    def identity(self, models: Sequence[str] | None = None) -> RunIdentity:
        """The fields that decide the results (run.json): a rerun must agree on all of them.

        Args:
            models: tags of the evaluated models (run.json names them); None = name the folder.
        """
        unset = {f.name: f.default for f in dataclasses.fields(self) if f.name in NOT_IDENTITY}
        unset["out"] = ""  # the one of them without a default
        return RunIdentity(dataclasses.replace(self, **unset),
                           None if models is None else tuple(models))


NOT_IDENTITY = ("out", "device", "cache", "grid_rows")  # BenchmarkCfg fields that leave results alone


@dataclass(frozen=True)
class RunIdentity:
    """What decides a run's results: run.json, summary.json's `config`, the pipeline's digest."""

    cfg: BenchmarkCfg  # fields in NOT_IDENTITY hold their defaults (out: "")
    models: tuple[str, ...] | None = None  # evaluated tags; run.json writes them over `models`

    def to_json(self) -> dict[str, Any]:
        """The JSON object of run.json (with `models`) or of summary.json's `config` (without)."""
        data = {k: v for k, v in dataclasses.asdict(self.cfg).items() if k not in NOT_IDENTITY}
        if self.models is not None:  # run.json has always named the models, not their folder
            data["models"] = self.models
        return json_values(data)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunIdentity:
        """Read run.json or summary.json's `config` (a list under `models` = evaluated tags)."""
        names = [f.name for f in dataclasses.fields(BenchmarkCfg) if f.name not in NOT_IDENTITY]
        values = fields_of(names, data, "benchmark run.json")
        tags = values["models"] if isinstance(values["models"], tuple) else None
        if tags is not None:
            values["models"] = ""  # run.json does not record the folder
        return cls(BenchmarkCfg(**values, out=""), tags)
