"""`mm2latent benchmark`: the paper's Table 1 (and Tables 2 / 3 with --ablation) as one command.

flows/cli.py mounts it with `add_benchmark_command(app)`. Exit codes: 0 done, 2 a user error
(bad data root, empty pair set, unknown model version), shown as one red line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from flows.cli_common import console, note_tiny, progress_bar, user_errors

if TYPE_CHECKING:  # the CLI imports the benchmark code only when the command runs
    from mm2latent.benchmark.records import FinishedBenchmark

_HELP_VERSION = ("mapping-mask version to evaluate: latest (the latest of each registered --text "
                 "kind: pteg, captions, mixed), 3, v3, mapping-mask-v3, or released (the "
                 "authors' models the preset names, e.g. ffhq-official); repeat the option or "
                 "separate with commas for several, e.g. released,latest.")


def benchmark_command(
    celebamask: Annotated[str, typer.Option(help="CelebAMask-HQ root (holds CelebAMask-HQ-mask-anno/).")],
    captions: Annotated[str, typer.Option(help="CelebA-Dialog captions_hq.json.")],
    reference: Annotated[str, typer.Option(help="CMMD reference: folder/URL of images (FFHQ) or a synth-data dataset.")],
    out: Annotated[str, typer.Option(help="Output folder (rerun the same command to resume).")],
    models: Annotated[str, typer.Option(help="The --out of `mm2latent train` (registry at <models>/registry).")] = "runs/tiny",
    model_version: Annotated[Optional[list[str]], typer.Option("--model-version", "--versions", help=_HELP_VERSION)] = None,
    preset: Annotated[str, typer.Option(help="Preset the models were trained with: tiny (not faces), ffhq, or ffhq-official (also names the authors' released models).")] = "tiny",
    n_pairs: Annotated[int, typer.Option(help="Pairs (mask + caption) to evaluate.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of the pair selection and the generator noise.")] = 0,
    caption_field: Annotated[str, typer.Option(help="overall_caption, or Bangs/Eyeglasses/No_Beard/Smiling/Young.")] = "overall_caption",
    chunk_size: Annotated[int, typer.Option(help="Pairs per resumable result chunk.")] = 16,
    device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
    parser: Annotated[str, typer.Option(help="Mask-accuracy parser (ffhq preset): bisenet or facer.")] = "bisenet",
    clip_model: Annotated[Optional[str], typer.Option(help="CLIP-score weights name (default clip.vit-b-32-openai).")] = None,
    cmmd_model: Annotated[Optional[str], typer.Option(help="CMMD weights name (default clip.vit-l-14-336-openai).")] = None,
    reference_limit: Annotated[Optional[int], typer.Option(help="Use only the first N reference images.")] = None,
    cache: Annotated[Optional[str], typer.Option(help="Cache of merged masks and reference embeddings (default <out>/cache).")] = None,
    ablation: Annotated[bool, typer.Option(help="Evaluate every registered mapping-mask version; write Tables 2 and 3.")] = False,
) -> None:
    """Evaluate MappingNets on CelebA-Dialog captions + CelebAMask-HQ masks (CLIP score, mask accuracy, CMMD, latency)."""
    from flows.benchmark import benchmark
    from flows.cli_flow import run_flow
    from mm2latent.benchmark.config import BenchmarkCfg
    from mm2latent.benchmark.run import make_plan

    values = dict(celebamask=celebamask, captions=captions, out=out, models=models,
                  preset=preset, n_pairs=n_pairs, seed=seed, caption_field=caption_field,
                  chunk_size=chunk_size, device=device, parser=parser, clip_model=clip_model,
                  cmmd_model=cmmd_model, reference_limit=reference_limit, cache=cache,
                  ablation=ablation)
    versions = [v.strip() for value in model_version or ["latest"] for v in value.split(",")]
    from storage.path_checks import check_output_dir

    with user_errors(reference, out):
        check_output_dir(out)
        plan = make_plan(BenchmarkCfg(reference=reference, versions=tuple(versions), **values))
        total = len(plan.selection.pairs) * len(plan.models)
        with progress_bar() as progress:
            bar = progress.add_task("benchmark", total=total, rate="")
            finished = run_flow(lambda on_progress: benchmark(
                reference_images=reference, versions=versions, **values, on_progress=on_progress),
                on_progress=lambda n: progress.update(bar, advance=n))
    _print(finished)
    note_tiny(preset)


def _print(finished: FinishedBenchmark) -> None:
    out = console()
    for m in finished.summary.models:
        out.print(f"{m.label}: CLIP score {m.clip_score:.2f}, mask acc. "
                  f"{m.mask_accuracy:.2f} %, CMMD {m.cmmd:.3f}, {m.images_per_s:.2f} images/s")
    missing = finished.summary.run.missing_captions
    if missing:
        out.print(f"skipped {len(missing)} annotated image(s) without a caption (e.g. "
                  f"{', '.join(f'{i}.jpg' for i in missing[:5])})")
    out.print(f"wrote {finished.out}/report.md, results.parquet, grid.png", soft_wrap=True)


def add_benchmark_command(app: typer.Typer) -> None:
    """Mount `benchmark` on the main CLI app."""
    app.command("benchmark")(benchmark_command)
