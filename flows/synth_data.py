"""The `synth-data` flow: StyleGAN2 samples -> sharded, resumable, multimodal WebDataset."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.runners import check_runner_choice, dask_task_runner
from mm2latent.synth.params import SynthDataParams
from mm2latent.synth.run import SynthSummary
from storage.lease import dataset_lease
from tasks.synth import plan_dataset, summarize_dataset, synthesize_shard

# Hard upper bound on concurrent shards; `max_workers` picks how many are used (default 1: each
# shard already uses every core through torch's intra-op threads).
_MAX_THREADS = 8


@flow(name="synth-data", task_runner=ThreadPoolTaskRunner(max_workers=_MAX_THREADS))
def synth_data(params: SynthDataParams = SynthDataParams(), overwrite: bool = False,
               verify: bool = False, task_runner: str = "threads",
               dask_address: str | None = None,
               on_progress: Callable[[int], None] | None = None) -> SynthSummary:
    """Generate `params.n_samples` samples of `params.preset` into `params.out`; rerun to resume.

    Args:
        params: the dataset and how to compute it (mm2latent.synth.params.SynthDataParams). A
            deployment gives its fields as JSON, which Prefect validates into the object before
            the run starts; the CLI and the pipeline pass the object they already validated.
        overwrite: delete an existing dataset at `params.out` instead of resuming into it.
        verify: re-hash complete shards against their stats files and redo damaged ones (every
            rerun already compares their sizes).
        task_runner: "threads" (this process) or "dask" (prefect-dask, one shard per task).
        dask_address: existing Dask scheduler, e.g. tcp://10.0.0.5:8786; None = a LocalCluster.
        on_progress: called once with the number of samples already in complete shards (0 on a
            fresh run), then with the number of samples finished after each batch.
    """
    check_runner_choice(task_runner, dask_address)
    # One writer per dataset: a second run into the same --out refuses here, before any write.
    with dataset_lease(params.out, purpose="synth-data"):
        summary = _write_dataset(params, overwrite, verify, task_runner, dask_address, on_progress)
    create_markdown_artifact(_summary_markdown(summary), key="synth-data-summary")
    return summary


def _write_dataset(params: SynthDataParams, overwrite: bool, verify: bool, task_runner: str,
                   dask_address: str | None,
                   on_progress: Callable[[int], None] | None) -> SynthSummary:
    """Plan, write the missing shards (at most max_workers at once, or on Dask), summarise."""
    todo = plan_dataset(params, overwrite, verify)
    if on_progress is not None:  # samples already in complete shards count as done
        on_progress(params.n_samples - sum(len(params.shard_indices(s)) for s in todo))
    if task_runner == "dask":
        _run_on_dask(params, todo, dask_address, on_progress)
    elif params.max_workers == 1:
        # Called directly, a task runs in the flow's own thread: a second thread would bring a
        # second OpenMP team whose spinning workers compete with the first for the same cores.
        for shard in todo:
            synthesize_shard(params, shard, on_progress)
    else:
        in_flight = []  # at most max_workers shards submitted and not yet finished
        for shard in todo:
            if len(in_flight) == params.max_workers:
                in_flight.pop(0).result()
            in_flight.append(synthesize_shard.submit(params, shard, on_progress))
        for future in in_flight:
            future.result()
    return summarize_dataset(params)


def _run_on_dask(params: SynthDataParams, todo: list[int], dask_address: str | None,
                 on_progress: Callable[[int], None] | None) -> None:
    """Every shard of `todo` as one task on Dask; progress advances per finished shard.

    The Dask scheduler bounds concurrency (one shard per worker thread), so every shard is
    submitted at once. A worker lost mid-shard leaves no stats marker: Dask reruns the task
    elsewhere, or the next run of the flow redoes that shard.
    """
    if not todo:
        return
    with dask_task_runner(dask_address, params.max_workers) as runner:
        futures = [runner.submit(synthesize_shard, {"params": params, "shard": shard})
                   for shard in todo]
        for shard, future in zip(todo, futures):
            future.result()
            if on_progress is not None:  # callbacks stay in this process, never shipped
                on_progress(len(params.shard_indices(shard)))


def _summary_markdown(summary: SynthSummary) -> str:
    """A small Markdown report of a finished run."""
    lines = [f"# synth-data: {summary.out}", "",
             "| samples | ok | failed | shards |", "|---|---|---|---|",
             f"| {summary.samples} | {summary.ok} | {summary.failures} | {summary.shards} |"]
    if not summary.makes_faces:
        lines += ["", f"Preset `{summary.preset}` uses random-weight networks: its images are not faces."]
    return "\n".join(lines)
