"""Training flows: `train-autoencoders`, `train-mapping` and the scheduled `retrain`.

Options left at None take the training config's default (mm2latent.training.config).
"""

from __future__ import annotations

from collections.abc import Callable

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mm2latent.training.config import MappingTrainCfg, autoencoder_train_cfg, replace_cfg
from mm2latent.training.pipeline import ae_name, mapping_name
from mm2latent.training.registry import default_registry_url
from mm2latent.training.snapshot import ShardSnapshot
from storage.fs import join
from tasks.storage import clean_interrupted
from tasks.train import plan_retrain, snapshot_shards, train_autoencoder, train_mapping

_HISTORY_COLUMNS = ("epoch", "step", "lr", "train_loss", "val_loss", "train_distance",
                    "train_cosine", "val_distance", "val_cosine")


def _publish(report: dict) -> None:
    """Loss table and a Markdown summary (metrics + link to the curves PNG) as Prefect artifacts."""
    record, summary = report["record"], report["summary"]
    tag = f"{record['name']}-v{record['version']}"
    key = tag.replace("_", "-").lower()
    rows = [{c: row[c] for c in _HISTORY_COLUMNS if c in row} for row in summary["history"]]
    create_table_artifact(rows, key=f"{key}-losses", description=f"{tag}: loss per epoch")
    metrics = ", ".join(f"{k} = {v:.5g}" for k, v in summary["metrics"].items()
                        if isinstance(v, float))
    lines = [f"# {tag}", "", f"- checkpoint: `{record['checkpoint_url']}`",
             f"- best epoch {summary['best_epoch']} of {summary['epochs_done']}"
             + (" (stopped early)" if summary["stopped_early"] else ""),
             f"- metrics: {metrics}", f"- dataset: `{record['dataset_url']}` "
             f"(hash {record['dataset_hash'][:12]})",
             f"- loss curves: [{join(summary['run_url'], 'curves.png')}]"
             f"({join(summary['run_url'], 'curves.png')})"]
    create_markdown_artifact("\n".join(lines), key=f"{key}-summary")


@flow(name="train-autoencoders")
def train_autoencoders(dataset: str, out: str = "runs", registry: str | None = None,
                       preset: str = "tiny", modalities: list[str] = ["mask", "sketch"],
                       epochs: int | None = None, batch_size: int | None = None,
                       lr: float | None = None, schedule: str | None = None,
                       weight_decay: float | None = None, val_fraction: float | None = None,
                       patience: int | None = None, seed: int | None = None,
                       device: str | None = None, resume: bool = False,
                       real_masks: str | None = None, real_sketches: str | None = None,
                       recipe: str = "ours", keep_checkpoints: int | None = None,
                       on_progress: Callable[[int], None] | None = None,
                       snapshot: ShardSnapshot | None = None) -> list[dict]:
    """Train the mask (MSE) and/or sketch (BCE) autoencoder, register them, write embeddings.

    Args:
        dataset: synth-data dataset root (fsspec URL).
        out: root of the run directories (checkpoints, curves.png, summary.json).
        registry: model registry directory; None = `<out>/registry`.
        preset: architecture preset ("tiny" or "ffhq").
        modalities: which autoencoders, subset of mask, sketch.
        epochs, batch_size, lr, schedule, weight_decay, val_fraction, patience, seed, device:
            training overrides; None = default (lr: 1e-3 mask, 1e-2 sketch).
        resume: continue interrupted runs of the same data and settings.
        real_masks, real_sketches: optional directories of real `*.png` label masks / sketches
            (white strokes on black) trained on besides the dataset.
        recipe: "ours" or "official" (the authors' networks, inputs, constant lr, random affine
            + flip augmentation).
        keep_checkpoints: epoch checkpoints kept besides the best (default 2).
        on_progress: called with 1 per finished epoch (CLI progress bar).
        snapshot: the shards to train on (a parent run's); None = the complete shards now.
    """
    real = {"mask": real_masks, "sketch": real_sketches}
    overrides = dict(epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule,
                     weight_decay=weight_decay, val_fraction=val_fraction, patience=patience,
                     seed=seed, device=device, keep_checkpoints=keep_checkpoints)
    configs = [autoencoder_train_cfg(m, recipe, **overrides) for m in modalities]  # fail early
    registry = registry or default_registry_url(out)
    clean_interrupted([out, registry, join(dataset, "embeddings")])
    snapshot = snapshot or snapshot_shards(dataset)  # one list of shards for every modality
    reports = []
    for cfg in configs:
        report = train_autoencoder(dataset, out, registry, preset, cfg, resume, on_progress,
                                   real[cfg.modality], snapshot)
        _publish(report)
        reports.append(report)
    return reports


@flow(name="train-mapping")
def train_mapping_flow(dataset: str, modality: str = "mask", out: str = "runs",
                       registry: str | None = None, preset: str = "tiny",
                       embeddings: str | None = None, epochs: int | None = None,
                       batch_size: int | None = None, lr: float | None = None,
                       schedule: str | None = None, weight_decay: float | None = None,
                       val_fraction: float | None = None, patience: int | None = None,
                       seed: int | None = None, device: str | None = None,
                       cosine_weight: float | None = None, pteg: bool = True,
                       batchnorm: bool | None = None, dropout: float | None = None,
                       depth: int | None = None, resume: bool = False,
                       on_progress: Callable[[int], None] | None = None,
                       keep_checkpoints: int | None = None,
                       snapshot: ShardSnapshot | None = None) -> dict:
    """Train and register a MappingNet for one modality (mask, sketch or flame).

    Args:
        dataset: dataset root; mask/sketch also need autoencoder embeddings in it.
        modality: spatial input: mask, sketch or flame.
        out: root of the run directories.
        registry: model registry directory; None = `<out>/registry`.
        preset: architecture preset.
        embeddings: embeddings version, e.g. "mask-ae-v2"; None = latest registered autoencoder.
        epochs ... device: training overrides; None = default.
        cosine_weight: lambda of the cosine term (default 10).
        pteg: pseudo text embedding generation on (paper) or off (ablation).
        batchnorm, dropout, depth: architecture ablations (Tables 2 and 3); None = preset.
        resume: continue an interrupted run of the same data and settings.
        on_progress: called with 1 per finished epoch.
        keep_checkpoints: epoch checkpoints kept besides the best (default 2).
        snapshot: the shards to train on (a parent run's); None = the complete shards now.
    """
    cfg = replace_cfg(MappingTrainCfg(modality=modality, pteg=pteg), dict(
        epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, weight_decay=weight_decay,
        val_fraction=val_fraction, patience=patience, seed=seed, device=device,
        cosine_weight=cosine_weight, keep_checkpoints=keep_checkpoints))
    switches = {"use_batchnorm": batchnorm, "dropout": dropout, "depth": depth}
    registry = registry or default_registry_url(out)
    clean_interrupted([out, registry])
    report = train_mapping(dataset, out, registry, preset, cfg, switches, embeddings, resume,
                           on_progress, snapshot or snapshot_shards(dataset))
    _publish(report)
    return report


@flow(name="retrain")
def retrain(dataset: str, out: str = "runs", registry: str | None = None, preset: str = "tiny",
            autoencoders: list[str] = ["mask", "sketch"],
            mappings: list[str] = ["mask", "sketch", "flame"],
            ae_epochs: int | None = None, mapping_epochs: int | None = None,
            batch_size: int | None = None, device: str | None = None) -> dict:
    """Scheduled retraining: if the dataset has shards the registered models have not seen,
    retrain the autoencoders, then the MappingNets on the new embeddings; otherwise do nothing.

    Args:
        dataset: dataset root that synth-data keeps growing.
        out: root of the run directories.
        registry: model registry directory; None = `<out>/registry`.
        preset: architecture preset.
        autoencoders: autoencoders to keep current (mask, sketch).
        mappings: MappingNets to keep current (mask, sketch, flame).
        ae_epochs, mapping_epochs, batch_size, device: training overrides; None = default.
    """
    registry = registry or default_registry_url(out)
    names = [ae_name(m) for m in autoencoders] + [mapping_name(m) for m in mappings]
    # One snapshot for the whole run: synth-data may complete shards while it trains.
    snapshot = snapshot_shards(dataset)
    plan = plan_retrain(dataset, registry, names, snapshot)
    create_markdown_artifact(f"# retrain\n\n{plan['reason']}", key="retrain-decision")
    if not plan["needed"]:
        return {"retrained": False, "reason": plan["reason"], "records": []}
    # resume=True: a retrain interrupted by a crash continues its runs instead of failing.
    reports = train_autoencoders(dataset, out, registry, preset, autoencoders, epochs=ae_epochs,
                                 batch_size=batch_size, device=device, resume=True,
                                 snapshot=snapshot)
    for modality in mappings:
        reports.append(train_mapping_flow(dataset, modality, out, registry, preset,
                                          epochs=mapping_epochs, batch_size=batch_size,
                                          device=device, resume=True, snapshot=snapshot))
    return {"retrained": True, "reason": plan["reason"],
            "records": [r["record"] for r in reports]}
