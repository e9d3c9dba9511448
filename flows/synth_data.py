"""The `synth-data` flow: StyleGAN2 samples -> sharded, resumable, multimodal WebDataset."""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from mm2latent.synth.params import ALL_MODALITIES, SynthDataParams, parse_params
from storage.lease import dataset_lease
from tasks.synth import plan_dataset, summarize_dataset, synthesize_shard

# Hard upper bound on concurrent shards; `max_workers` picks how many are used (default 1: each
# shard already uses every core through torch's intra-op threads).
_MAX_THREADS = 8


@flow(name="synth-data", task_runner=ThreadPoolTaskRunner(max_workers=_MAX_THREADS))
def synth_data(preset: str = "tiny", n_samples: int = 256, samples_per_shard: int = 64,
               seed: int = 0, truncation_psi: float = 0.7, out: str = "data/tiny",
               batch_size: int = 16, device: str = "cpu", image_size: int | None = None,
               image_format: str = "png", modalities: list[str] = list(ALL_MODALITIES),
               max_workers: int = 1, overwrite: bool = False,
               on_progress: Callable[[int], None] | None = None) -> dict:
    """Generate `n_samples` samples of `preset` into `out`; rerun to resume.

    Args:
        preset: "tiny" (seeded networks, images are not faces) or "ffhq" (official weights).
        n_samples: dataset size; sample i depends only on (seed, i, preset, weights).
        samples_per_shard: samples per .tar shard.
        seed: dataset seed.
        truncation_psi: StyleGAN2 truncation (1 = none).
        out: fsspec URL of the dataset root (local path, memory://, s3://...).
        batch_size: samples per forward pass; never changes the output.
        device: torch device.
        image_size: stored image side in pixels; None = the preset's.
        image_format: "png" (lossless) or "jpg".
        modalities: annotations to compute, subset of mask, sketch, flame, farl.
        max_workers: shards processed at once (threads, at most 8); 1 = in the flow's thread.
        overwrite: delete an existing dataset at `out` instead of resuming into it.
        on_progress: called once with the number of samples already in complete shards (0 on a
            fresh run), then with the number of samples finished after each batch.
    """
    params = parse_params(preset=preset, n_samples=n_samples, samples_per_shard=samples_per_shard,
                          seed=seed, truncation_psi=truncation_psi, out=out, batch_size=batch_size,
                          device=device, image_size=image_size, image_format=image_format,
                          modalities=tuple(modalities), max_workers=max_workers)
    # One writer per dataset: a second run into the same --out refuses here, before any write.
    with dataset_lease(params.out, purpose="synth-data"):
        summary = _write_dataset(params, overwrite, on_progress)
    create_markdown_artifact(_summary_markdown(summary), key="synth-data-summary")
    return summary


def _write_dataset(params: SynthDataParams, overwrite: bool,
                   on_progress: Callable[[int], None] | None) -> dict:
    """Plan, write the missing shards (at most max_workers at once), summarise."""
    todo = plan_dataset(params, overwrite)
    if on_progress is not None:  # samples already in complete shards count as done
        on_progress(params.n_samples - sum(len(params.shard_indices(s)) for s in todo))
    if params.max_workers == 1:
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


def _summary_markdown(summary: dict) -> str:
    """A small Markdown report of a finished run."""
    lines = [f"# synth-data: {summary['out']}", "",
             "| samples | ok | failed | shards |", "|---|---|---|---|",
             f"| {summary['samples']} | {summary['ok']} | {summary['failures']} | {summary['shards']} |"]
    if not summary["makes_faces"]:
        lines += ["", f"Preset `{summary['preset']}` uses random-weight networks: its images are not faces."]
    return "\n".join(lines)
