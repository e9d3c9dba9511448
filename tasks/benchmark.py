"""Prefect tasks of the benchmark flow: each calls one step of mm2latent.benchmark.run."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mm2latent.benchmark import run
from mm2latent.benchmark.config import BenchmarkCfg
from mm2latent.benchmark.fixture import write_fixture
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
def plan(cfg: BenchmarkCfg) -> dict:
    """Validate the inputs, then record run.json and the pairs."""
    summary = run.start(cfg)
    if summary["missing_captions"]:
        get_run_logger().warning("%d annotated image(s) without a caption were skipped (e.g. %s)",
                                 len(summary["missing_captions"]), summary["missing_captions"][:5])
    return summary


@task(name="benchmark-reference", cache_policy=NO_CACHE, retries=1)
def reference(cfg: BenchmarkCfg) -> dict:
    """Reference embeddings for CMMD (cached by file list and model)."""
    meta = run.reference(cfg)
    get_run_logger().info("reference: %d images, cached at %s", meta["images"], meta["url"])
    return meta


@task(name="benchmark-evaluate", cache_policy=NO_CACHE)
def evaluate(cfg: BenchmarkCfg, on_progress=None) -> dict:
    """Generate and score every unfinished chunk of every model."""
    done = run.evaluate(cfg, on_progress)
    get_run_logger().info("chunks computed now: %s", done)
    return done


@task(name="benchmark-finish", cache_policy=NO_CACHE)
def finish(cfg: BenchmarkCfg, reference_meta: dict, missing_captions: list[int]) -> dict:
    """results.parquet, summary.json, report.md and grid.png."""
    return run.finish(cfg, reference_meta, missing_captions)
