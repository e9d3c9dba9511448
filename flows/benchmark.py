"""The `benchmark` flow: every listed MappingNet version on the same CelebA-Dialog /
CelebAMask-HQ pairs; CLIP score, mask accuracy, CMMD and latency; report, grid and artifacts."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mm2latent.benchmark.config import BenchmarkCfg
from mm2latent.benchmark.records import FinishedBenchmark
from mm2latent.benchmark.run import resolve_out
from storage.fs import join
from tasks.benchmark import evaluate, finish, make_fixture, plan, reference

_COLUMNS = ("model", "label", "clip_score", "mask_accuracy", "cmmd", "images_per_s")


def _publish(finished: FinishedBenchmark) -> None:
    """Table 1 rows, the report and the grid as Prefect artifacts."""
    rows = [{c: getattr(m, c) for c in _COLUMNS} for m in finished.summary.models]
    create_table_artifact(rows, key="benchmark-table", description="Table 1: our rows")
    create_markdown_artifact(finished.report, key="benchmark-report")
    grid = join(finished.out, "grid.png")
    create_markdown_artifact(f"# Benchmark examples\n\nmask | caption | generated: [{grid}]({grid})",
                             key="benchmark-grid")


@flow(name="benchmark")
def benchmark(celebamask: str, captions: str, reference_images: str, out: str,
              models: str = "runs/tiny", versions: list[str] = ["latest"], preset: str = "tiny",
              n_pairs: int = 64, seed: int = 0, caption_field: str = "overall_caption",
              chunk_size: int = 16, device: str = "cpu", parser: str = "bisenet",
              clip_model: str | None = None, cmmd_model: str | None = None,
              reference_limit: int | None = None, cache: str | None = None,
              ablation: bool = False, fixture: str | None = None,
              on_progress: Callable[[int], None] | None = None) -> FinishedBenchmark:
    """Evaluate mask MappingNets as in the paper's Table 1 (and Tables 2 / 3).

    Args:
        celebamask: CelebAMask-HQ root (holds CelebAMask-HQ-mask-anno/).
        captions: CelebA-Dialog captions_hq.json.
        reference_images: CMMD reference (folder / fsspec URL of images, or a synth-data dataset).
        out: output folder; rerunning skips finished chunks. "{models}" in it is replaced by
            the evaluated models' tags (e.g. runs/x/{models} -> runs/x/mapping-mask-v3).
        models: the --out of `mm2latent train` (registry at <models>/registry).
        versions: mapping-mask versions ("latest": the latest of each registered text input,
            "3", "v3", "mapping-mask-v3") and / or "released" (the authors' models named by the
            preset, e.g. ffhq-official).
        preset, n_pairs, seed, caption_field, chunk_size, device, parser, clip_model,
            cmmd_model, reference_limit, cache, ablation: see BenchmarkCfg.
        fixture: write the small fixture under this folder first if `captions` is missing
            (the tiny deployment); None = never.
        on_progress: called with the number of pairs finished (CLI progress bar).
    """
    cfg = BenchmarkCfg(celebamask=celebamask, captions=captions, reference=reference_images,
                       out=out, models=models, versions=tuple(versions), preset=preset,
                       n_pairs=n_pairs, seed=seed, caption_field=caption_field,
                       chunk_size=chunk_size, device=device, parser=parser,
                       clip_model=clip_model, cmmd_model=cmmd_model,
                       reference_limit=reference_limit, cache=cache, ablation=ablation)
    cfg = resolve_out(cfg)
    if fixture is not None:
        make_fixture(fixture, captions)
    started = plan(cfg)
    cached = reference(cfg)
    evaluate(cfg, on_progress)
    finished = finish(cfg, cached, started.missing_captions)
    _publish(finished)
    return finished
