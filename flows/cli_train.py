"""`mm2latent train ...`: autoencoders and MappingNets from a synth-data dataset.

A typer sub-app; flows/cli.py mounts it with `app.add_typer(train_app, name="train")`.
Exit codes: 0 done, 2 a user error (empty dataset, missing modality, dimension mismatch,
NaN loss, bad option) shown as one red line; checkpoints written before it are kept.
"""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.cli_common import console, user_errors
from flows.cli_flow import run_flow
from flows.cli_options import options_command
from mm2latent.input_checks import check_device
from mm2latent.presets import get_preset
from mm2latent.training.config import TrainCfg
from mm2latent.training.options import AutoencoderOptions, MappingOptions, TrainRunOptions
from mm2latent.training.reports import AutoencoderReport, MappingReport
from storage.path_checks import check_output_dir

train_app = typer.Typer(help="Train the spatial autoencoders and the MappingNets.",
                        no_args_is_help=True)


def _run_with_bar(label: str, total: int, flow_call):
    """run_flow(flow_call) under a rich progress bar counting epochs; return its result."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("epochs"), TimeElapsedColumn())
    with Progress(*columns, console=console(stderr=True), redirect_stderr=True) as progress:
        bar = progress.add_task(label, total=total)
        return run_flow(flow_call, on_progress=lambda n: progress.update(bar, advance=n))


def _print_record(report: AutoencoderReport | MappingReport) -> None:
    record, summary = report.record, report.summary
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in summary.metrics_dict().items()
                        if isinstance(v, float))
    console().print(f"[green]{record.tag}[/] {record.checkpoint_url}  "
                    f"(best epoch {summary.best_epoch}: {metrics})")


def _check_outputs(options: TrainRunOptions) -> None:
    """Fail before training (and before the Prefect server starts) on an unknown --preset, a
    --out / --registry that is a file or a missing bucket, or a bad device."""
    get_preset(options.preset)
    check_output_dir(options.out)
    if options.registry:
        check_output_dir(options.registry, "--registry")
    if options.device:
        check_device(options.device)


@train_app.command("autoencoders")
@options_command(AutoencoderOptions)
def autoencoders_command(options: AutoencoderOptions) -> None:
    """Train the mask (MSE) and sketch (BCE) autoencoders, register them, write embeddings."""
    from flows.train import train_autoencoders

    with user_errors(options.dataset, options.out, options.registry):
        _check_outputs(options)
        options.train_cfgs()  # a bad --recipe, --lr, --schedule ... is refused here
        total = (options.epochs or TrainCfg.epochs) * len(options.modalities)
        reports = _run_with_bar("autoencoders", total, lambda cb: train_autoencoders(
            **options.model_dump(), on_progress=cb))
    for report in reports:
        _print_record(report)
        console().print(f"  embeddings: {report.embeddings.url}")


@train_app.command("mapping")
@options_command(MappingOptions)
def mapping_command(options: MappingOptions) -> None:
    """Train and register a MappingNet: (pseudo text, spatial embedding) -> w."""
    from flows.train import train_mapping_flow

    with user_errors(options.dataset, options.out, options.registry):
        _check_outputs(options)
        options.train_cfg()  # a bad --lr, --schedule ... is refused here
        report = _run_with_bar(f"mapping-{options.modality}", options.epochs or TrainCfg.epochs,
                               lambda cb: train_mapping_flow(**options.model_dump(), on_progress=cb))
    _print_record(report)
