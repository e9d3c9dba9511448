"""Prefect tasks of the benchmark flow: each calls one step of mm2latent.benchmark.run."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mm2latent.benchmark import run
from mm2latent.benchmark.config import BenchmarkCfg
from mm2latent.benchmark.fixture import write_fixture
from mm2latent.benchmark.records import CmmdReference, FinishedBenchmark, StartedRun
from storage.fs import exists

# The files under --out are the cache (chunks are skipped when finished), never Prefect's.


@task(name="benchmark-fixture", cache_policy=NO_CACHE)
def make_fixture(root: str, captions: str) -> bool:
    """Write the small CelebAMask-HQ / CelebA-Dialog fixture under `root` unless `captions` exists."""
    if exists(captions):
        return False
    write_fixture(root)  # logs where it wrote
    return True


@task(name="benchmark-plan", cache_policy=NO_CACHE)
def plan(cfg: BenchmarkCfg) -> StartedRun:
    """Validate the inputs, then record run.json and the pairs."""
    started = run.start(cfg)
    if started.missing_captions:
        get_run_logger().warning("%d annotated image(s) without a caption were skipped (e.g. %s)",
                                 len(started.missing_captions), list(started.missing_captions[:5]))
    return started


@task(name="benchmark-reference", cache_policy=NO_CACHE, retries=1)
def reference(cfg: BenchmarkCfg) -> CmmdReference:
    """Reference embeddings for CMMD (cached by file list and model)."""
    cached = run.reference(cfg)
    get_run_logger().info("reference: %d images, cached at %s", cached.meta.images, cached.url)
    return cached


@task(name="benchmark-evaluate", cache_policy=NO_CACHE)
def evaluate(cfg: BenchmarkCfg, on_progress=None) -> dict[str, int]:
    """Generate and score every unfinished chunk of every model."""
    done = run.evaluate(cfg, on_progress)
    get_run_logger().info("chunks computed now: %s", done)
    return done


@task(name="benchmark-finish", cache_policy=NO_CACHE)
def finish(cfg: BenchmarkCfg, cached: CmmdReference,
           missing_captions: tuple[int, ...]) -> FinishedBenchmark:
    """results.parquet, summary.json, report.md and grid.png."""
    return run.finish(cfg, cached, missing_captions)
