"""`mm2latent dataset attributes` (and the other curation commands): per-sample attributes,
captions and curated selections of a dataset.

flows/cli.py mounts them on the `dataset` sub-app with `add_curation_commands(dataset_app)`.
Exit codes: 0 done, 2 a user error shown as one red line, 130/143 interrupted (rerun resumes);
each runs its flow with flows/cli_flow.run_flow.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from flows.cli_common import console, user_errors
from flows.cli_curate import curate_command

TINY_ATTRIBUTES = ("[yellow]Note:[/] the dataset's preset runs random-weight networks: its "
                   "attributes (mask shares, DECA pose, FaRL zero-shot scores) are meaningless; "
                   "only the mechanics are real.")


def attributes_command(
    dataset: Annotated[str, typer.Argument(help="Dataset root URL (e.g. data/tiny).")],
    sources: Annotated[Optional[str], typer.Option(help="Comma list of attribute sources: mask, deca, farl (default: all).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Preset of the scoring networks (FaRL text tower); default: the dataset's.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples computed at once (values do not depend on it).")] = 64,
) -> None:
    """Per-sample attributes (mask class shares, head pose, zero-shot CelebA attributes) beside the dataset; rerun to resume."""
    from flows.attributes import attributes
    from flows.cli_common import progress_bar
    from flows.cli_flow import run_flow
    from mm2latent.attributes.run import source_names
    from storage.dataset_index import DatasetIndex, complete_shards
    from storage.path_checks import check_dataset_dir

    with user_errors(dataset):
        check_dataset_dir(dataset)
        DatasetIndex.read(dataset)
        names = source_names(sources)  # bad names fail before Prefect starts
        total = len(complete_shards(dataset))
        with progress_bar() as progress:
            bar = progress.add_task("attributes", total=total, rate="")
            summary = run_flow(lambda on_progress: attributes(dataset, names, preset, batch_size,
                                                              on_progress),
                               lambda count: progress.update(bar, advance=count))
            progress.update(bar, completed=total)
    if not summary.makes_faces:
        console(stderr=True).print(TINY_ATTRIBUTES)
    console().print(f"[bold]{summary.dataset}[/]: {summary.written} shard file(s) written, "
                    f"{summary.skipped} already complete; folders "
                    f"{', '.join(summary.folders)} under attributes/", soft_wrap=True)


def captions_command(
    dataset: Annotated[str, typer.Argument(help="Dataset root URL with attributes (run `dataset attributes` first).")],
    sources: Annotated[Optional[str], typer.Option(help="Comma list of attribute sources or folders to read (default: every attributes folder).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the phrasing choice (a caption depends on seed and sample index).")] = 0,
) -> None:
    """CelebA-Dialog-style captions per sample from its attributes, beside the dataset; rerun to resume."""
    from flows.captions import captions
    from flows.cli_flow import run_flow
    from mm2latent.captions.run import plan
    from storage.path_checks import check_dataset_dir

    with user_errors(dataset):
        check_dataset_dir(dataset)
        names = tuple(n.strip() for n in sources.split(",") if n.strip()) if sources else None
        plan(dataset, names, seed)  # missing attributes fail before Prefect starts
        summary = run_flow(lambda _: captions(dataset, names, seed), between_batches=False)
    console().print(f"[bold]{summary.dataset}[/]: captions/{summary.folder}: {summary.written} "
                    f"shard(s) written, {summary.skipped} already complete. First: "
                    f"{summary.example!r}", soft_wrap=True)


def add_curation_commands(dataset_app: typer.Typer) -> None:
    """Register the curation commands on the `dataset` sub-app."""
    dataset_app.command("attributes")(attributes_command)
    dataset_app.command("captions")(captions_command)
    dataset_app.command("curate")(curate_command)
