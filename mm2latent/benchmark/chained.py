"""The benchmark as the pipeline's last step: which MappingNet, which data, which folder.

On a seeded preset (tiny) the latest mask MappingNet is evaluated on the generated
CelebAMask-HQ / CelebA-Dialog fixture, written beside the dataset (`<data>/../benchmark-fixture`,
where deployment `benchmark/tiny` writes it for `data/tiny`). Each set of inputs (model version,
pairs, seed, data) gets its own folder `<runs>/benchmark/<model tag>-<digest>`, so a finished
report for the same inputs is found again and a new model version never collides with an old run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from mm2latent.benchmark.config import BenchmarkCfg
from mm2latent.benchmark.fixture import fixture_urls
from mm2latent.benchmark.records import BenchmarkSummary
from mm2latent.benchmark.run import read_summary
from mm2latent.presets import get_preset
from mm2latent.training.pipeline import mapping_name
from mm2latent.training.registry import ModelRecord, ModelRegistry, default_registry_url
from storage import benchmark_store as store
from storage.fs import dirname, join

FIXTURE_DIR = "benchmark-fixture"  # beside the dataset, as in prefect.yaml's benchmark/tiny


@dataclass(frozen=True)
class ChainedBenchmark:
    """One benchmark run of the pipeline: its config, the fixture root and the model evaluated."""

    cfg: BenchmarkCfg  # versions pinned to `record`'s version; out is the per-inputs folder
    fixture: str  # root the fixture is written under when its captions file is missing
    record: ModelRecord  # the mapping-mask version evaluated


def fixture_root(data: str) -> str:
    """Where the pipeline writes (or finds) the fixture for dataset `data`."""
    return join(dirname(data), FIXTURE_DIR)


def plan_chained(data: str, runs: str, preset: str, n_pairs: int, seed: int,
                 chunk_size: int = 4) -> ChainedBenchmark | str:
    """The benchmark run for the latest mask MappingNet, or the reason there is none to do."""
    if get_preset(preset).makes_faces:
        return (f"preset {preset!r} is evaluated on the real CelebAMask-HQ / CelebA-Dialog: "
                "run `mm2latent benchmark` (README, Benchmark)")
    record = ModelRegistry(default_registry_url(runs)).latest(mapping_name("mask"))
    if record is None:
        return "no mask MappingNet registered"
    root = fixture_root(data)
    cfg = BenchmarkCfg(**dataclasses.asdict(fixture_urls(root)), out="", models=runs,
                       versions=(str(record.version),), preset=preset, n_pairs=n_pairs, seed=seed,
                       chunk_size=chunk_size)
    digest = hashlib.sha256(json.dumps(cfg.identity().to_json(), sort_keys=True).encode()).hexdigest()[:12]
    out = join(runs, "benchmark", f"{record.tag}-{digest}")
    return ChainedBenchmark(dataclasses.replace(cfg, out=out), root, record)


def finished_summary(job: ChainedBenchmark) -> BenchmarkSummary | None:
    """summary.json of the run if it finished for these inputs, else None."""
    if not store.check_run(job.cfg.out, job.cfg.identity([job.record.tag]).to_json()):
        return None
    return read_summary(job.cfg.out)
