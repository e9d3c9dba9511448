"""The `pipeline` flow: synth-data -> train-autoencoders -> train-mapping (each modality) ->
benchmark, as subflows, skipping every step whose outputs are already complete for the same inputs.

Each step is one function `(PipelineRun) -> status`; to extend the chain, append a step to
`STEPS` (the benchmark step joins it this way). Lineage is recorded as Prefect assets as the
steps finish (tasks/lineage.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prefect import flow

from flows.benchmark import benchmark
from flows.runners import check_runner_choice
from flows.synth_data import synth_data
from flows.train import train_autoencoders, train_mapping_flow
from mm2latent.lineage import asset_key, embeddings_asset, model_asset
from mm2latent.modalities.registry import default_registry
from mm2latent.synth.params import SynthDataParams, parse_params
from mm2latent.training.options import TrainChainOptions, parse_options
from mm2latent.training.registry import default_registry_url
from storage.embeddings import embeddings_url
from tasks.lineage import record_asset
from tasks.pipeline import (autoencoders_to_train, benchmark_finished, benchmark_job,
                            benchmark_lineage, check_dataset, dataset_lineage, mapping_is_current,
                            registered_record)


@dataclass
class PipelineRun:
    """What the steps share: the run's settings and what earlier steps produced."""

    params: SynthDataParams  # the dataset to make (params.out is the dataset root)
    runs: str  # root of the training run directories
    registry: str  # model registry directory
    mappings: list[str]  # MappingNets to train
    training: TrainChainOptions  # the autoencoder and MappingNet runs (dataset = params.out)
    task_runner: str = "threads"  # where synth-data's shards run
    dask_address: str | None = None  # existing Dask scheduler, None = LocalCluster
    benchmark_pairs: int = 8  # pairs the benchmark step evaluates; 0 = no benchmark step
    models: dict[str, str] = field(default_factory=dict)  # registry name -> asset key

    @property
    def dataset_key(self) -> str:
        return asset_key(self.params.out)


def synth_step(run: PipelineRun) -> str:
    """Make (or finish) the dataset; record its asset when shards were written."""
    if check_dataset(run.params):
        return "skipped: every shard is complete"
    # The object the pipeline validated once: the subflow and its tasks take it as it is.
    synth_data(run.params, task_runner=run.task_runner, dask_address=run.dask_address)
    record_asset(dataset_lineage(run.params.out))
    return "ran"


def autoencoder_step(run: PipelineRun) -> str:
    """Train the autoencoders the MappingNets need; record models and embeddings."""
    # modalities whose MappingNet reads autoencoder embeddings
    wanted = [m for m in default_registry().maps if m in run.mappings]
    todo = autoencoders_to_train(
        run.training.model_copy(update={"autoencoders": wanted}).autoencoder_options()
    ) if wanted else []
    if not todo:
        return "skipped: autoencoders are current" if wanted else "skipped: none needed"
    options = run.training.model_copy(update={"autoencoders": todo}).autoencoder_options()
    for report in train_autoencoders(**options.model_dump()):
        record = registered_record(run.registry, report.record)
        run.models[record.name] = record_asset(model_asset(record, [run.dataset_key]))
        record_asset(embeddings_asset(report.embeddings.url, record, run.dataset_key))
    return f"ran: {', '.join(todo)}"


def mapping_step(run: PipelineRun) -> str:
    """Train the MappingNets that are not current; record them with their inputs."""
    ran = []
    for modality in run.mappings:
        options = run.training.mapping_options(modality)
        if mapping_is_current(options):
            continue
        report = train_mapping_flow(**options.model_dump())
        record = registered_record(run.registry, report.record)
        upstream = [run.dataset_key]
        if record.extra.get("embeddings"):  # the folder is named after the autoencoder's weights
            upstream.append(asset_key(embeddings_url(run.params.out, record.extra["embeddings"])))
        run.models[record.name] = record_asset(model_asset(record, upstream))
        ran.append(modality)
    return f"ran: {', '.join(ran)}" if ran else "skipped: MappingNets are current"


def benchmark_step(run: PipelineRun) -> str:
    """Benchmark the latest mask MappingNet (tiny: on the generated fixture); record the report."""
    if run.benchmark_pairs == 0:
        return "skipped: benchmark_pairs=0"
    job = benchmark_job(run.params.out, run.runs, run.params.preset, run.benchmark_pairs,
                        run.params.seed)
    if isinstance(job, str):
        return f"skipped: {job}"
    if benchmark_finished(job):
        return f"skipped: the report of {job.record.tag} on these pairs is finished"
    c = job.cfg
    benchmark(celebamask=c.celebamask, captions=c.captions, reference_images=c.reference,
              out=c.out, models=c.models, versions=list(c.versions), preset=c.preset,
              n_pairs=c.n_pairs, seed=c.seed, chunk_size=c.chunk_size, device=run.params.device,
              fixture=job.fixture)
    record_asset(benchmark_lineage(job))
    return f"ran: {job.record.tag}, report {c.out}/report.md"


STEPS: dict[str, Callable[[PipelineRun], str]] = {
    "synth-data": synth_step, "train-autoencoders": autoencoder_step, "train-mapping": mapping_step,
    "benchmark": benchmark_step}


def plan_pipeline(preset: str, n_samples: int, samples_per_shard: int, seed: int, data: str,
                  runs: str, mappings: list[str], ae_epochs: int | None,
                  mapping_epochs: int | None, batch_size: int | None, device: str,
                  task_runner: str, dask_address: str | None, max_workers: int,
                  benchmark_pairs: int) -> PipelineRun:
    """The pipeline flow's checked settings (the flow's arguments); a ConfigError or
    ParameterError names a bad one. The CLI calls it before it starts a Prefect server."""
    check_runner_choice(task_runner, dask_address)
    params = parse_params(preset=preset, n_samples=n_samples, samples_per_shard=samples_per_shard,
                          seed=seed, out=data, device=device, max_workers=max_workers)
    registry = default_registry_url(runs)
    training = parse_options(TrainChainOptions, dict(
        dataset=data, out=runs, registry=registry, preset=preset, mappings=list(mappings),
        ae_epochs=ae_epochs, mapping_epochs=mapping_epochs, batch_size=batch_size, device=device))
    return PipelineRun(params, runs, registry, list(mappings), training, task_runner,
                       dask_address, benchmark_pairs)


@flow(name="pipeline")
def pipeline(preset: str = "tiny", n_samples: int = 256, samples_per_shard: int = 64,
             seed: int = 0, data: str = "data/tiny", runs: str = "runs/tiny",
             mappings: list[str] = ["mask", "sketch", "flame"], ae_epochs: int | None = None,
             mapping_epochs: int | None = None, batch_size: int | None = None,
             device: str = "cpu", task_runner: str = "threads", dask_address: str | None = None,
             max_workers: int = 1, benchmark_pairs: int = 8) -> dict[str, str]:
    """The whole chain on one dataset; rerun it to resume or to pick up changed settings.

    Args:
        preset: "tiny" (seeded networks, images are NOT faces) or "ffhq".
        n_samples, samples_per_shard, seed: the dataset (see the synth-data flow); seed also
            draws the benchmark pairs.
        data: dataset root (fsspec URL).
        runs: root of training runs; the registry is `<runs>/registry`.
        mappings: MappingNets to train (mask, sketch, flame); mask/sketch bring their autoencoder.
        ae_epochs, mapping_epochs, batch_size: training overrides; None = the defaults.
        device: torch device for every step.
        task_runner, dask_address, max_workers: where synth-data's shards run (threads or dask).
        benchmark_pairs: pairs the benchmark step evaluates (seeded presets: on the generated
            fixture beside `data`); 0 = skip the benchmark.

    Returns:
        step name -> "ran: ..." or "skipped: <why>".
    """
    run = plan_pipeline(preset=preset, n_samples=n_samples, samples_per_shard=samples_per_shard,
                        seed=seed, data=data, runs=runs, mappings=mappings, ae_epochs=ae_epochs,
                        mapping_epochs=mapping_epochs, batch_size=batch_size, device=device,
                        task_runner=task_runner, dask_address=dask_address,
                        max_workers=max_workers, benchmark_pairs=benchmark_pairs)
    return {name: step(run) for name, step in STEPS.items()}
