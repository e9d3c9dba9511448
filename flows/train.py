"""Training flows: `train-autoencoders`, `train-mapping` and the scheduled `retrain`.

Their parameters are the fields of the options models in mm2latent.training.options (declared
once there; flows/parameters.py spreads them into each flow's signature). Options left at None
take the training config's default (mm2latent.training.config).
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.parameters import flat_parameters
from mm2latent.training.options import AutoencoderOptions, MappingOptions, TrainChainOptions
from mm2latent.training.pipeline import ae_name, mapping_name
from mm2latent.training.reports import AutoencoderReport, MappingReport, RetrainReport
from mm2latent.training.snapshot import ShardSnapshot
from storage.fs import join
from tasks.storage import clean_interrupted
from tasks.train import (check_resume, plan_retrain, snapshot_shards, train_autoencoder,
                         train_mapping)

_HISTORY_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "train_distance",
                    "train_cosine", "val_distance", "val_cosine")


def _publish(report: AutoencoderReport | MappingReport) -> None:
    """Loss table and a Markdown summary (metrics + link to the curves PNG) as Prefect artifacts."""
    record, summary = report.record, report.summary
    key = record.tag.replace("_", "-").lower()
    rows = [{c: row[c] for c in _HISTORY_COLUMNS if c in row}
            for row in (r.to_dict() for r in summary.history)]
    create_table_artifact(rows, key=f"{key}-losses", description=f"{record.tag}: loss per epoch")
    metrics = ", ".join(f"{k} = {v:.5g}" for k, v in summary.metrics_dict().items()
                        if isinstance(v, float))
    curves = join(summary.run_url, "curves.png")
    lines = [f"# {record.tag}", "", f"- checkpoint: `{record.checkpoint_url}`",
             f"- best epoch {summary.best_epoch} of {summary.epochs_done}"
             + (" (stopped early)" if summary.stopped_early else ""),
             f"- metrics: {metrics}", f"- dataset: `{record.dataset_url}` "
             f"(hash {record.dataset_hash[:12]})", f"- loss curves: [{curves}]({curves})"]
    create_markdown_artifact("\n".join(lines), key=f"{key}-summary")


@flow(name="train-autoencoders")
@flat_parameters(AutoencoderOptions)
def train_autoencoders(options: AutoencoderOptions,
                       on_progress: Callable[[int], None] | None = None,
                       snapshot: ShardSnapshot | None = None) -> list[AutoencoderReport]:
    """Train the mask (MSE) and/or sketch (BCE) autoencoder, register them, write embeddings.

    Args:
        on_progress: called with 1 per finished epoch (CLI progress bar).
        snapshot: the shards to train on (a parent run's); None = the complete shards now.
    """
    configs = options.train_cfgs()  # fail early, before any file is touched
    clean_interrupted([options.out, options.registry_url, join(options.dataset, "embeddings")])
    snapshot = snapshot or snapshot_shards(options.dataset)  # one list of shards for every modality
    if options.must_resume:
        check_resume(options, snapshot)
    reports = []
    for cfg in configs:
        report = train_autoencoder(options, cfg, on_progress, snapshot)
        _publish(report)
        reports.append(report)
    return reports


@flow(name="train-mapping")
@flat_parameters(MappingOptions)
def train_mapping_flow(options: MappingOptions, on_progress: Callable[[int], None] | None = None,
                       snapshot: ShardSnapshot | None = None) -> MappingReport:
    """Train and register a MappingNet for one modality (mask, sketch or flame).

    Args:
        on_progress: called with 1 per finished epoch.
        snapshot: the shards to train on (a parent run's); None = the complete shards now.
    """
    options.train_cfg()  # fail early, before any file is touched
    clean_interrupted([options.out, options.registry_url])
    snapshot = snapshot or snapshot_shards(options.dataset)
    if options.must_resume:
        check_resume(options, snapshot)
    report = train_mapping(options, on_progress, snapshot)
    _publish(report)
    return report


@flow(name="retrain")
@flat_parameters(TrainChainOptions)
def retrain(options: TrainChainOptions) -> RetrainReport:
    """Scheduled retraining: if the dataset has shards the registered models have not seen,
    retrain the autoencoders, then the MappingNets on the new embeddings; otherwise do nothing.
    """
    names = [ae_name(m) for m in options.autoencoders] + [mapping_name(m) for m in options.mappings]
    # One snapshot for the whole run: synth-data may complete shards while it trains.
    snapshot = snapshot_shards(options.dataset)
    plan = plan_retrain(options.dataset, options.registry_url, names, snapshot)
    create_markdown_artifact(f"# retrain\n\n{plan.reason}", key="retrain-decision")
    if not plan.needed:
        return RetrainReport(retrained=False, reason=plan.reason)
    reports: list[AutoencoderReport | MappingReport] = []
    if options.autoencoders:
        reports += train_autoencoders(**options.autoencoder_options().model_dump(),
                                      snapshot=snapshot)
    for modality in options.mappings:
        reports.append(train_mapping_flow(**options.mapping_options(modality).model_dump(),
                                          snapshot=snapshot))
    return RetrainReport(retrained=True, reason=plan.reason,
                         records=tuple(r.record for r in reports))
