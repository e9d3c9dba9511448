"""`mm2latent pipeline`: the whole chain (synth-data -> autoencoders -> MappingNets -> benchmark)
in one command.

flows/cli.py mounts it with `add_pipeline_command(app)`.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from flows.cli_common import console, user_errors

TaskRunnerOpt = Annotated[str, typer.Option(
    help="Where synth-data's shards run: threads (this process) or dask (prefect-dask).")]
DaskAddressOpt = Annotated[Optional[str], typer.Option(
    help="Existing Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a LocalCluster).")]


def pipeline_command(
    preset: Annotated[str, typer.Option(help="Preset: tiny (seeded, NOT faces) or ffhq.")] = "tiny",
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 256,
    samples_per_shard: Annotated[int, typer.Option(help="Samples per .tar shard.")] = 64,
    data: Annotated[str, typer.Option(help="Dataset root: path, memory://, s3://...")] = "data/tiny",
    runs: Annotated[str, typer.Option(help="Training runs root; registry in <runs>/registry.")] = "runs/tiny",
    mappings: Annotated[str, typer.Option(help="Comma list of MappingNets: mask,sketch,flame.")] = "mask,sketch,flame",
    ae_epochs: Annotated[Optional[int], typer.Option(help="Autoencoder epochs (default 20).")] = None,
    mapping_epochs: Annotated[Optional[int], typer.Option(help="MappingNet epochs (default 50).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Training batch size.")] = None,
    device: Annotated[str, typer.Option(help="torch device.")] = "cpu",
    task_runner: TaskRunnerOpt = "threads", dask_address: DaskAddressOpt = None,
    max_workers: Annotated[int, typer.Option(help="Shards at once (threads or LocalCluster workers).")] = 1,
    benchmark_pairs: Annotated[int, typer.Option(help="Pairs the benchmark step evaluates; 0 = no benchmark.")] = 8,
) -> None:
    """Run synth-data, train the autoencoders and MappingNets, benchmark; skip what is done."""
    from flows.cli_flow import run_flow
    from flows.pipeline import pipeline, plan_pipeline
    from storage.path_checks import check_output_dir

    values = dict(preset=preset, n_samples=n, samples_per_shard=samples_per_shard, seed=0,
                  data=data, runs=runs,
                  mappings=[m.strip() for m in mappings.split(",") if m.strip()],
                  ae_epochs=ae_epochs, mapping_epochs=mapping_epochs, batch_size=batch_size,
                  device=device, task_runner=task_runner, dask_address=dask_address,
                  max_workers=max_workers, benchmark_pairs=benchmark_pairs)
    with user_errors(data, runs):
        check_output_dir(data, "--data")
        check_output_dir(runs, "--runs")
        plan_pipeline(**values)  # every value is checked before the Prefect server starts
        if preset == "tiny":
            console(stderr=True).print("[yellow]Note:[/] preset 'tiny' runs random-weight "
                                       "networks: its images are NOT faces.")
        # Its steps report no progress: a signal stops it at once (each step resumes).
        steps = run_flow(lambda _: pipeline(**values), between_batches=False)
    for name, status in steps.items():
        console().print(f"[bold]{name}[/]: {status}", soft_wrap=True)


def add_pipeline_command(app: typer.Typer) -> None:
    """Mount `pipeline` on the top-level app."""
    app.command("pipeline")(pipeline_command)
