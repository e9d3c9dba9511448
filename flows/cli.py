"""The `mm2latent` command line: typer commands that build a config and call one flow.

The outermost layer: the library never imports it. Progress bars live here and in flows.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import Progress

from flows.cli_app import app_command
from flows.cli_benchmark import add_benchmark_command
from flows.cli_common import NOT_FACES, console, note_tiny, progress_bar, user_errors
from flows.cli_curation import add_curation_commands
from flows.cli_edit import edit_dataset_command, export_command
from flows.cli_generate import add_inference_commands, cli_modalities
from flows.cli_pipeline import DaskAddressOpt, TaskRunnerOpt, add_pipeline_command
from flows.cli_train import train_app
from flows.cli_weights import weights_app
from flows.cli_flow import run_flow
from flows.interrupts import Interrupted

if TYPE_CHECKING:  # imported lazily at run time: the library is slow to import
    from mm2latent.synth.run import SynthSummary

app = typer.Typer(help="MM2Latent: multimodal StyleGAN2 generation and editing.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
dataset_app = typer.Typer(help="Look at a synth-data dataset.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")
app.add_typer(dataset_app, name="dataset")
app.add_typer(train_app, name="train")
add_inference_commands(app, cli_modalities())  # condition flags: the registry at CLI start
dataset_app.command("export")(export_command)
add_curation_commands(dataset_app)
app.command("edit-dataset")(edit_dataset_command)
add_benchmark_command(app)
add_pipeline_command(app)
app.command("app")(app_command)

@app.command("synth-data")
def synth_data_command(
    preset: Annotated[str, typer.Option(help="Preset: tiny (seeded, not faces) or ffhq.")] = "tiny",
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 256,
    out: Annotated[str, typer.Option(help="Dataset root: local path, memory://, s3://...")] = "data/tiny",
    samples_per_shard: Annotated[int, typer.Option(help="Samples per .tar shard.")] = 64,
    seed: Annotated[int, typer.Option(help="Dataset seed.")] = 0,
    truncation_psi: Annotated[float, typer.Option("--psi", help="Truncation psi (1 = none).")] = 0.7,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 16,
    device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
    image_size: Annotated[Optional[int], typer.Option(help="Stored image side (px).")] = None,
    image_format: Annotated[str, typer.Option(help="png or jpg.")] = "png",
    modalities: Annotated[str, typer.Option(help="Comma list of mask,sketch,flame,farl.")] = "mask,sketch,flame,farl",
    max_workers: Annotated[int, typer.Option(help="Shards processed at once.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset at --out.")] = False,
    task_runner: TaskRunnerOpt = "threads", dask_address: DaskAddressOpt = None,
    verify: Annotated[bool, typer.Option(help="Re-hash complete shards; redo damaged ones.")] = False,
) -> None:
    """Generate a sharded multimodal dataset (resumable: rerun the same command)."""
    from flows.runners import ProcessLocal, check_runner_choice
    from flows.synth_data import synth_data
    from mm2latent.input_checks import split_list
    from mm2latent.synth.params import parse_params
    from mm2latent.synth.run import validate
    from storage.path_checks import check_output_dir
    from storage.lease import refuse_if_held

    with user_errors(out):
        check_output_dir(out)
        # The one validation of these values: the flow and its tasks receive this object.
        params = parse_params(preset=preset, n_samples=n, samples_per_shard=samples_per_shard,
                              seed=seed, truncation_psi=truncation_psi, out=out,
                              batch_size=batch_size, device=device, image_size=image_size,
                              image_format=image_format, modalities=tuple(split_list(modalities)),
                              max_workers=max_workers)
        check_runner_choice(task_runner, dask_address)
        validate(params, overwrite)  # dataset and weights checks fail fast, before Prefect starts
        refuse_if_held(params.out)  # so does a second run into a dataset being written
        note_tiny(preset)
        try:
            with progress_bar() as progress:
                bar = progress.add_task("synth-data", total=params.n_samples, rate="")
                summary = run_flow(lambda on_progress: synth_data(
                    params, overwrite=overwrite, verify=verify, task_runner=task_runner,
                    dask_address=dask_address, on_progress=ProcessLocal(on_progress)),
                    on_progress=_advancer(progress, bar))
                progress.update(bar, completed=params.n_samples)
        except Interrupted as e:
            _print_interrupted(e, out)
            raise typer.Exit(e.exit_code) from None
    _print_summary(summary)


def _advancer(progress: Progress, bar: int):
    """The progress callback: the flow's first call counts samples already on disk."""
    clock = {"start": time.perf_counter(), "count": 0, "resumed": False}

    def advance(count: int) -> None:
        if not clock["resumed"]:
            clock["resumed"] = True
            progress.update(bar, advance=count)
            return
        clock["count"] += count
        rate = clock["count"] / max(time.perf_counter() - clock["start"], 1e-9)
        progress.update(bar, advance=count, rate=f"{rate:.1f} samples/s")

    return advance


def _print_interrupted(e: Interrupted, out: str) -> None:
    from storage.dataset_index import complete_shards

    console(stderr=True).print(
        f"[yellow]Interrupted[/] ({e}) after the current batch. {out} keeps "
        f"{len(complete_shards(out))} complete shard(s); the shard in progress was not "
        "committed. Resume: re-run the same command (complete shards are skipped).",
        soft_wrap=True)


def _print_summary(summary: SynthSummary) -> None:
    out = console()
    out.print(f"[bold]{summary.out}[/]: {summary.ok} ok, {summary.failures} failed, "
              f"{summary.shards} shards", soft_wrap=True)  # paths stay copyable
    if summary.failures:
        out.print("Failed samples are listed with their error in the shard parquet files "
                  "(status = 'failed'); `mm2latent dataset inspect` shows the first ones.")
    if not summary.makes_faces:
        out.print(NOT_FACES)


@dataset_app.command("inspect")
def inspect_command(path: Annotated[str, typer.Argument(help="Dataset root URL.")],
                    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                    verify: Annotated[bool, typer.Option(help="Re-hash every shard against its stats file.")] = False) -> None:
    """Counts, failures and per-modality statistics of a dataset."""
    from mm2latent.dataset_report import inspect_dataset, render_report, verify_dataset
    from storage.path_checks import check_dataset_dir

    with user_errors(path):
        check_dataset_dir(path)
        # Before any tar is read: a damaged shard is reported by name, not as a tar traceback.
        # Sizes are always compared (cheap); --verify also re-hashes every byte.
        verified = verify_dataset(path, rehash=verify)
        report = inspect_dataset(path)
        if verify:
            console(stderr=True).print(f"verified {len(verified)} shard(s): sha256 match")
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(report), indent=2, default=str))
    else:
        typer.echo(render_report(report))


@dataset_app.command("grid")
def grid_command(path: Annotated[str, typer.Argument(help="Dataset root URL.")],
                 out: Annotated[str, typer.Option(help="PNG file to write: path or s3://... URL.")] = "grid.png",
                 rows: Annotated[int, typer.Option(help="Samples (rows) in the sheet.")] = 8) -> None:
    """Write a PNG contact sheet: image | colourised mask | sketch, one sample per row."""
    from mm2latent.dataset_report import contact_sheet
    from mm2latent.input_checks import check_positive
    from mm2latent.modalities.codecs import encode_png
    from storage.atomic import atomic_write_bytes
    from storage.path_checks import check_dataset_dir, check_output_file

    with user_errors(path, out):
        check_positive(rows, "--rows")
        check_output_file(out)  # a str, not a Path: Path would turn s3://b/x into s3:/b/x
        sheet = contact_sheet(check_dataset_dir(path), n_rows=rows)
        atomic_write_bytes(out, encode_png(sheet))
    console().print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]} px)", soft_wrap=True)


@app.command("presets")
def presets_command(name: Annotated[Optional[str], typer.Argument(help="Show one preset.")] = None) -> None:
    """List the presets, or print one preset's resolved config as JSON."""
    from mm2latent.presets import PRESETS, get_preset

    with user_errors():
        if name is None:
            for key, preset in PRESETS.items():
                kind = "official weights" if preset.makes_faces else "seeded, NOT faces"
                typer.echo(f"{key:6s} {preset.generator.img_resolution:5d} px  {kind}")
            return
        typer.echo(json.dumps(dataclasses.asdict(get_preset(name)), indent=2, default=str))
