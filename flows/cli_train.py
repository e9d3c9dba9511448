"""`mm2latent train ...`: autoencoders and MappingNets from a synth-data dataset.

A typer sub-app; flows/cli.py mounts it with `app.add_typer(train_app, name="train")`.
Exit codes: 0 done, 2 a user error (empty dataset, missing modality, dimension mismatch,
NaN loss, bad option) shown as one red line; checkpoints written before it are kept.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.cli_common import console, user_errors
from mm2latent.input_checks import check_device, parse_list
from mm2latent.training.config import TrainCfg
from storage.path_checks import check_output_dir

train_app = typer.Typer(help="Train the spatial autoencoders and the MappingNets.",
                        no_args_is_help=True)

Dataset = Annotated[str, typer.Option(help="Dataset root (synth-data output): path, memory://, s3://.")]
Out = Annotated[str, typer.Option(help="Root of the run directories (checkpoints, curves.png).")]
Registry = Annotated[Optional[str], typer.Option(help="Model registry directory (default <out>/registry).")]
Preset = Annotated[str, typer.Option(help="Architecture preset: tiny or ffhq.")]
Epochs = Annotated[Optional[int], typer.Option(help=f"Epochs (default {TrainCfg.epochs}).")]
BatchSize = Annotated[Optional[int], typer.Option(help=f"Batch size (default {TrainCfg.batch_size}).")]
Lr = Annotated[Optional[float], typer.Option(help="Adam learning rate (default per model).")]
Schedule = Annotated[Optional[str], typer.Option(help="lr schedule: cosine, step or none.")]
WeightDecay = Annotated[Optional[float], typer.Option(help="Adam weight decay (0 = none).")]
ValFraction = Annotated[Optional[float], typer.Option(help="Held-out share of samples, by index.")]
Patience = Annotated[Optional[int], typer.Option(help="Early stopping patience in epochs (0 = off).")]
Seed = Annotated[Optional[int], typer.Option(help="Seed of init, shuffling and noise.")]
Device = Annotated[Optional[str], typer.Option(help="torch device (default cpu).")]
Resume = Annotated[bool, typer.Option(help="Continue the interrupted run of the same data and settings.")]
KeepCheckpoints = Annotated[Optional[int], typer.Option(
    help=f"Epoch checkpoints kept besides the best (default {TrainCfg.keep_checkpoints}).")]


def _run_with_bar(label: str, total: int, run):
    """Call run(on_progress) under a rich progress bar counting epochs; return its result."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("epochs"), TimeElapsedColumn())
    with Progress(*columns, console=console(stderr=True), redirect_stderr=True) as progress:
        bar = progress.add_task(label, total=total)
        return run(lambda n: progress.update(bar, advance=n))


def _print_record(report: dict) -> None:
    record, summary = report["record"], report["summary"]
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in summary["metrics"].items() if isinstance(v, float))
    console().print(f"[green]{record['name']}-v{record['version']}[/] {record['checkpoint_url']}  "
                    f"(best epoch {summary['best_epoch']}: {metrics})")


def _check_outputs(out: str, registry: str | None, device: str | None) -> None:
    """Fail before training on a --out / --registry that is a file or a missing bucket, or a bad device."""
    check_output_dir(out)
    if registry:
        check_output_dir(registry, "--registry")
    if device:
        check_device(device)


@train_app.command("autoencoders")
def autoencoders_command(
    dataset: Dataset, out: Out = "runs", registry: Registry = None, preset: Preset = "tiny",
    modalities: Annotated[str, typer.Option(help="Comma list of mask,sketch.")] = "mask,sketch",
    epochs: Epochs = None, batch_size: BatchSize = None, lr: Lr = None, schedule: Schedule = None,
    weight_decay: WeightDecay = None, val_fraction: ValFraction = None, patience: Patience = None,
    seed: Seed = None, device: Device = None, resume: Resume = False,
    real_masks: Annotated[Optional[str], typer.Option(
        help="Directory of real label-id mask PNGs to train on as well.")] = None,
    real_sketches: Annotated[Optional[str], typer.Option(
        help="Directory of real sketch PNGs (white strokes on black) to train on as well.")] = None,
    keep_checkpoints: KeepCheckpoints = None,
    recipe: Annotated[str, typer.Option(
        help="ours (default) or official: the authors' networks, grey facer-order mask input, "
             "strokes at 1.02, constant lr, random affine + flip.")] = "ours",
) -> None:
    """Train the mask (MSE) and sketch (BCE) autoencoders, register them, write embeddings."""
    from flows.train import train_autoencoders

    with user_errors(dataset, out, registry):
        chosen = parse_list(modalities, ("mask", "sketch"), "--modalities")
        _check_outputs(out, registry, device)
        reports = _run_with_bar("autoencoders", (epochs or TrainCfg.epochs) * len(chosen),
                                lambda cb: train_autoencoders(
            dataset, out, registry, preset, chosen, epochs=epochs, batch_size=batch_size, lr=lr,
            schedule=schedule, weight_decay=weight_decay, val_fraction=val_fraction,
            patience=patience, seed=seed, device=device, resume=resume, real_masks=real_masks,
            real_sketches=real_sketches, recipe=recipe, on_progress=cb,
            keep_checkpoints=keep_checkpoints))
    for report in reports:
        _print_record(report)
        console().print(f"  embeddings: {report['embeddings']['url']}")


@train_app.command("mapping")
def mapping_command(
    dataset: Dataset,
    modality: Annotated[str, typer.Option(help="Spatial input: mask, sketch or flame.")] = "mask",
    out: Out = "runs", registry: Registry = None, preset: Preset = "tiny",
    embeddings: Annotated[Optional[str], typer.Option(
        help="Embeddings version, e.g. mask-ae-v2 (default: latest registered autoencoder).")] = None,
    epochs: Epochs = None, batch_size: BatchSize = None, lr: Lr = None, schedule: Schedule = None,
    weight_decay: WeightDecay = None, val_fraction: ValFraction = None, patience: Patience = None,
    seed: Seed = None, device: Device = None,
    cosine_weight: Annotated[Optional[float], typer.Option(help="lambda of the cosine term (default 10).")] = None,
    pteg: Annotated[bool, typer.Option(help="Pseudo text embedding generation (--no-pteg: ablation).")] = True,
    batchnorm: Annotated[Optional[bool], typer.Option(help="Input BatchNorm (default: preset).")] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Input dropout, 0 = none (default: preset).")] = None,
    depth: Annotated[Optional[int], typer.Option(help="Linear layers (default: preset).")] = None,
    resume: Resume = False, keep_checkpoints: KeepCheckpoints = None,
) -> None:
    """Train and register a MappingNet: (pseudo text, spatial embedding) -> w."""
    from flows.train import train_mapping_flow

    with user_errors(dataset, out, registry):
        _check_outputs(out, registry, device)
        report = _run_with_bar(f"mapping-{modality}", epochs or TrainCfg.epochs,
                               lambda cb: train_mapping_flow(
            dataset, modality, out, registry, preset, embeddings, epochs=epochs,
            batch_size=batch_size, lr=lr, schedule=schedule, weight_decay=weight_decay,
            val_fraction=val_fraction, patience=patience, seed=seed, device=device,
            cosine_weight=cosine_weight, pteg=pteg, batchnorm=batchnorm, dropout=dropout,
            depth=depth, resume=resume, on_progress=cb, keep_checkpoints=keep_checkpoints))
    _print_record(report)
