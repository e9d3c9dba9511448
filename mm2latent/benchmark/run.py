"""The benchmark's steps over files: plan (validate, record pairs), reference, evaluate, finish.

Each step takes the BenchmarkCfg and reads what earlier steps wrote under cfg.out, so the
Prefect tasks pass only the config. `plan` checks every input before anything is written.
"""

from __future__ import annotations

import dataclasses

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mm2latent.benchmark.captions import parse_captions
from mm2latent.benchmark.config import BenchmarkCfg
from mm2latent.benchmark.cmmd import KernelSum, cmmd
from mm2latent.benchmark.evaluate import STAGES, evaluate_chunk
from mm2latent.benchmark.masks import ANNOTATION_CLASSES, merge_class_masks
from mm2latent.benchmark.networks import (EvaluatedModel, build_metric_nets, load_models,
                                          resolve_models)
from mm2latent.benchmark.pairs import Pair, PairSelection, select_pairs
from mm2latent.benchmark.records import (BenchmarkSummary, ChunkLatency, CmmdReference, Conventions,
                                         FinishedBenchmark, LatencyMs, ModelSummary, ReferenceMeta,
                                         RunInfo, StartedRun)
from mm2latent.benchmark.reference import read_reference, reference_embeddings
from mm2latent.benchmark.report import example_grid, render_report
from mm2latent_core.errors import ConfigError
from mm2latent.presets import get_preset
from mm2latent.modalities.codecs import encode_png
from mm2latent.training.registry import default_registry_url
from storage import benchmark_store as store
from storage.celeba import CelebAMaskIndex, merged_mask, read_captions_file, scan_celebamask
from storage.fs import join
from storage.reference_images import embedding_cache_url, scan_reference

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class Plan:
    """Everything checked before a run writes: the data listing, pairs, reference, models."""

    index: CelebAMaskIndex
    selection: PairSelection
    models: tuple[EvaluatedModel, ...]


def models_of(cfg: BenchmarkCfg) -> list[EvaluatedModel]:
    """The run's models: registered versions and / or the preset's released ones."""
    return resolve_models(get_preset(cfg.preset), default_registry_url(cfg.models), cfg.versions,
                          cfg.ablation)


MODELS_PLACEHOLDER = "{models}"  # in `out`: the evaluated models' tags, one folder per model set


def resolve_out(cfg: BenchmarkCfg) -> BenchmarkCfg:
    """cfg with "{models}" in `out` replaced by the tags of the models it evaluates.

    A scheduled or triggered run with `out: runs/x/{models}` then benchmarks each new "latest"
    version in its own folder instead of refusing the folder of the previous version.
    """
    if MODELS_PLACEHOLDER not in cfg.out:
        return cfg
    tags = "+".join(m.tag for m in models_of(cfg))
    return dataclasses.replace(cfg, out=cfg.out.replace(MODELS_PLACEHOLDER, tags))


def cache_url(cfg: BenchmarkCfg, part: str) -> str:
    """Folder of one cache (merged masks, reference embeddings)."""
    return join(cfg.cache or join(cfg.out, "cache"), part)


def make_plan(cfg: BenchmarkCfg) -> Plan:
    """Check the roots, the captions, the pair set, the reference and the model versions."""
    cfg.metric_nets()
    index = scan_celebamask(cfg.celebamask, ANNOTATION_CLASSES)
    captions = parse_captions(read_captions_file(cfg.captions), cfg.caption_field, cfg.captions)
    selection = select_pairs(index.ids(), captions, cfg.n_pairs, cfg.seed)
    scan_reference(cfg.reference, cfg.reference_limit)
    return Plan(index=index, selection=selection, models=tuple(models_of(cfg)))


def start(cfg: BenchmarkCfg) -> StartedRun:
    """Validate everything, then record run.json and pairs.parquet (kept on a rerun)."""
    plan = make_plan(cfg)
    tags = tuple(m.tag for m in plan.models)
    identity = cfg.identity(tags).to_json()
    if not store.check_run(cfg.out, identity):
        pairs = plan.selection.pairs
        store.write_run(cfg.out, identity, {
            "image_id": np.array([p.image_id for p in pairs], np.int64),
            "caption": [p.caption for p in pairs],
            "noise_seed": np.array([p.noise_seed for p in pairs], np.int64)})
    missing = plan.selection.missing_captions
    if missing:
        logger.warning("%d annotated image(s) have no %s and were skipped, e.g. %s",
                       len(missing), cfg.caption_field, ", ".join(f"{i}.jpg" for i in missing[:5]))
    return StartedRun(pairs=len(plan.selection.pairs), candidates=plan.selection.candidates,
                      missing_captions=tuple(missing), models=tags)


def read_pairs(out: str) -> list[Pair]:
    """The pairs recorded by `start`."""
    table = store.read_parquet(join(out, store.PAIRS_FILE)).to_pydict()
    return [Pair(int(i), c, int(s)) for i, c, s in
            zip(table["image_id"], table["caption"], table["noise_seed"])]


def reference(cfg: BenchmarkCfg, cache_dir: Path | None = None) -> CmmdReference:
    """Embed (or read from cache) the reference set; its metadata (kernel sum, count, model)."""
    nets = build_metric_nets(get_preset(cfg.preset), cfg.metric_nets(), cfg.device, cache_dir)
    ref = scan_reference(cfg.reference, cfg.reference_limit)
    model_id = f"{nets.ids.cmmd}|limit={cfg.reference_limit}"
    folder = cache_url(cfg, "cmmd-reference")
    _, meta = reference_embeddings(nets.cmmd, model_id, ref, folder, cfg.sigma, cfg.reference_limit)
    return CmmdReference(meta, embedding_cache_url(folder, ref, model_id))


def _chunks(pairs: list[Pair], size: int) -> list[list[Pair]]:
    return [pairs[i:i + size] for i in range(0, len(pairs), size)]


def evaluate(cfg: BenchmarkCfg, on_progress: ProgressFn | None = None,
             cache_dir: Path | None = None) -> dict[str, int]:
    """Evaluate every model on every unfinished chunk; {model tag: chunks computed now}."""
    preset = get_preset(cfg.preset)
    pairs, index = read_pairs(cfg.out), scan_celebamask(cfg.celebamask, ANNOTATION_CLASSES)
    nets = build_metric_nets(preset, cfg.metric_nets(), cfg.device, cache_dir)
    models = load_models(preset, default_registry_url(cfg.models), models_of(cfg), cfg.device,
                         cache_dir)
    example_ids = {p.image_id for p in pairs[:cfg.grid_rows]}
    done: dict[str, int] = {}
    for tag, model in models.items():
        done[tag] = 0
        for number, chunk in enumerate(_chunks(pairs, cfg.chunk_size)):
            if store.chunk_done(cfg.out, tag, number):
                if on_progress:
                    on_progress(len(chunk))  # finished by an earlier run
                continue
            masks = np.stack([merged_mask(index, p.image_id, cache_url(cfg, "celebamask-merged"),
                                          merge_class_masks) for p in chunk])  # (B, 512, 512)
            result = evaluate_chunk(model, tag, nets, chunk, masks, cfg.eval_size)
            for i, pair in enumerate(chunk):
                if pair.image_id in example_ids:
                    store.write_bytes(join(cfg.out, "examples", tag), f"{pair.image_id}.png",
                                      encode_png(result.images[i].numpy()))
            store.write_chunk(cfg.out, tag, number, result.columns,
                              ChunkLatency(result.seconds, len(chunk)).to_json())
            done[tag] += 1
            if on_progress:
                on_progress(len(chunk))
    return done


def _model_results(cfg: BenchmarkCfg, tag: str, n_chunks: int) -> tuple[pa.Table, dict[str, float]]:
    """The model's per-pair table (all chunks) and its summed stage seconds."""
    tables, seconds = [], {}
    for number in range(n_chunks):
        if not store.chunk_done(cfg.out, tag, number):
            raise ConfigError(f"{cfg.out}: chunk {number} of {tag} is not finished; re-run the "
                              "same benchmark command to complete it.")
        tables.append(store.read_parquet(store.chunk_url(cfg.out, tag, number, "parquet")))
        latency = ChunkLatency.from_json(store.read_chunk_latency(cfg.out, tag, number))
        for stage, value in latency.seconds.items():
            seconds[stage] = seconds.get(stage, 0.0) + value
    return pa.concat_tables(tables), seconds


def _model_summary(model: EvaluatedModel, table: pa.Table, seconds: dict[str, float],
                   reference_embeddings, ref_meta: ReferenceMeta, sigma: float) -> ModelSummary:
    emb = table.column(store.EMBEDDING).combine_chunks()
    generated = emb.values.to_numpy(zero_copy_only=False).reshape(len(table), -1)
    y_sum = KernelSum(ref_meta.kernel_total, ref_meta.count)
    n = len(table)
    total = sum(seconds[s] for s in STAGES)
    latency = LatencyMs(**{s: 1000.0 * seconds[s] / n for s in STAGES}, total=1000.0 * total / n)
    return ModelSummary(
        model=model.tag, label=model.label, pairs=n,
        clip_score=float(np.mean(table.column("clip_score").to_numpy())),
        mask_accuracy=float(np.mean(table.column("mask_accuracy").to_numpy())),
        cmmd=cmmd(generated, reference_embeddings, sigma, y_sum=y_sum), latency_ms=latency,
        images_per_s=n / total if total > 0 else float("nan"),
        metric_seconds=seconds.get("metrics", 0.0), switches=model.switches,
        weights=tuple(model.released or ()))


def _run_info(cfg: BenchmarkCfg, n_pairs: int, ref_meta: ReferenceMeta,
              missing_captions: Sequence[int]) -> RunInfo:
    nets = cfg.metric_nets()
    preset = get_preset(cfg.preset)
    conventions = Conventions(
        clip=nets.clip_score or "seeded tiny CLIP tower", size=cfg.eval_size,
        parser=nets.parser or "seeded tiny BiSeNet", sigma=cfg.sigma,
        cmmd=nets.cmmd or "seeded tiny CLIP tower", ref_n=ref_meta.images, ref=cfg.reference,
        farl=preset.farl_weights or "seeded tiny FaRL")
    return RunInfo(pairs=n_pairs, seed=cfg.seed, caption_field=cfg.caption_field,
                   missing_captions=tuple(missing_captions), makes_faces=preset.makes_faces,
                   ablation=cfg.ablation, conventions=conventions, config=cfg.identity())


def _grid(cfg: BenchmarkCfg, pairs: list[Pair], tags: list[str]) -> np.ndarray:
    index = scan_celebamask(cfg.celebamask, ANNOTATION_CLASSES)
    rows = pairs[:cfg.grid_rows]
    masks = [merged_mask(index, p.image_id, cache_url(cfg, "celebamask-merged"), merge_class_masks)
             for p in rows]
    generated = [[store.read_png(join(cfg.out, "examples", t, f"{p.image_id}.png"))
                  for t in tags] for p in rows]
    return example_grid(masks, [p.caption for p in rows], generated)


def finish(cfg: BenchmarkCfg, reference: CmmdReference,
           missing_captions: Sequence[int]) -> FinishedBenchmark:
    """results.parquet, summary.json, report.md and grid.png from the finished chunks."""
    pairs = read_pairs(cfg.out)
    evaluated = models_of(cfg)
    cached = read_reference(reference.url)
    if cached is None:
        raise ConfigError(f"{reference.url}: reference embeddings vanished; re-run the command.")
    n_chunks = len(_chunks(pairs, cfg.chunk_size))
    tables, models = [], []
    for model in evaluated:
        table, seconds = _model_results(cfg, model.tag, n_chunks)
        tables.append(table.drop_columns([store.EMBEDDING]))
        models.append(_model_summary(model, table, seconds, cached[0], reference.meta, cfg.sigma))
    store.write_bytes(cfg.out, store.RESULTS_FILE, store.table_bytes(pa.concat_tables(tables)))
    summary = BenchmarkSummary(_run_info(cfg, len(pairs), reference.meta, missing_captions),
                               tuple(models))
    report = render_report(summary)
    store.write_bytes(cfg.out, "report.md", report.encode())
    store.write_bytes(cfg.out, "grid.png", encode_png(_grid(cfg, pairs, [m.tag for m in evaluated])))
    # Last: summary.json marks the run finished (the pipeline skips a finished run).
    store.write_bytes(cfg.out, store.SUMMARY_FILE,
                      (json.dumps(summary.to_json(), indent=2) + "\n").encode())
    return FinishedBenchmark(summary, cfg.out, report)


def read_summary(out: str) -> BenchmarkSummary | None:
    """summary.json of a finished run under `out`, None if the run has not finished."""
    data = store.read_summary(out)
    return None if data is None else BenchmarkSummary.from_json(data)
