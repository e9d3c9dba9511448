"""report.md in the paper's Table 1 layout (plus Tables 2 / 3 for ablations) and the example grid."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mm2latent.benchmark.records import BenchmarkSummary, ModelSummary
from mm2latent.models.face_parser.labels import colorize

# Table 1 of the paper (text + mask, CelebA-Dialog / CelebAMask-HQ): CLIP score, mask acc. %, CMMD.
PAPER_TABLE1 = (
    ("TediGAN", 22.53, 82.86, 1.70),
    ("Composable Diffusion", 23.52, 80.76, 2.55),
    ("UniteConquer", 23.22, 85.29, 1.53),
    ("Collaborative Diffusion", 23.48, 82.96, 1.98),
    ("MM2Latent (paper)", 24.59, 85.61, 1.43),
)
CONVENTIONS = (
    "CLIP score = 100 x cosine(image, caption), mean over pairs, not clamped; CLIP model `{clip}`, "
    "official preprocessing (bicubic shorter side, centre crop, CLIP mean/std); captions longer "
    "than CLIP's 77 tokens are truncated (end token kept).",
    "Mask accuracy = % of pixels whose parsed label equals the input CelebAMask-HQ label, at "
    "{size} px; parser `{parser}`.",
    "CMMD = 1000 x biased MMD^2 (diagonal included), Gaussian RBF sigma {sigma}, L2-normalised "
    "embeddings of `{cmmd}`; reference: {ref_n} images of `{ref}`.",
    "Latency = ms per generation per stage (caption encode, mask encode, MappingNet, generator), "
    "excluding the metric networks.",
)
TINY_WARNING = ("**These numbers mean nothing.** Preset `tiny` runs seeded random networks: the "
                "generator, FaRL, the CLIP towers and the parser are untrained, the images are "
                "not faces. The run only exercises the benchmark's code paths.")


def _row(label: str, clip: float, acc: float, cmmd: float) -> str:
    return f"| {label} | {clip:.2f} | {acc:.2f} | {cmmd:.2f} |"


def table1(models: Sequence[ModelSummary]) -> list[str]:
    """Markdown lines of Table 1: the paper's rows, then ours."""
    lines = ["| Method | CLIP score ↑ | Mask acc. (%) ↑ | CMMD ↓ |", "|---|---|---|---|"]
    lines += [_row(*row) for row in PAPER_TABLE1]
    lines += [_row(f"**{m.label}**", m.clip_score, m.mask_accuracy, m.cmmd) for m in models]
    return lines


def ablation_tables(models: Sequence[ModelSummary]) -> list[str]:
    """Markdown lines of Table 2 (PTEG / BatchNorm / dropout) and Table 3 (depth)."""
    lines = ["## Table 2: PTEG, BatchNorm, dropout", "",
             "| Model | PTEG | BatchNorm | Dropout | CLIP score ↑ | Mask acc. (%) ↑ | CMMD ↓ |",
             "|---|---|---|---|---|---|---|"]
    for m in models:
        s = m.switches
        lines.append(f"| {m.model} | {s.pteg} | {s.use_batchnorm} | {s.dropout} | "
                     f"{m.clip_score:.2f} | {m.mask_accuracy:.2f} | {m.cmmd:.2f} |")
    lines += ["", "## Table 3: depth", "", "| Model | Layers | CLIP score ↑ | Mask acc. (%) ↑ | CMMD ↓ |",
              "|---|---|---|---|---|"]
    for m in sorted(models, key=lambda m: (m.switches.depth, m.model)):
        lines.append(f"| {m.model} | {m.switches.depth} | {m.clip_score:.2f} | "
                     f"{m.mask_accuracy:.2f} | {m.cmmd:.2f} |")
    lines += ["", "Train the variants with `mm2latent train mapping --modality mask` and "
              "`--no-pteg`, `--no-batchnorm`, `--dropout 0`, `--depth 4/8/12`; every registered "
              "mapping-mask version is a row. The paper's numbers for these tables are not "
              "reproduced here."]
    return lines


def latency_table(models: Sequence[ModelSummary]) -> list[str]:
    """Markdown lines of the per-stage latency table (Table 4 style)."""
    lines = ["| Model | caption encode (ms) | mask encode (ms) | MappingNet (ms) | generator (ms) "
             "| total (ms) | images/s |", "|---|---|---|---|---|---|---|"]
    for m in models:
        ms = m.latency_ms
        lines.append(f"| {m.label} | {ms.text_encode:.2f} | {ms.spatial_encode:.2f} | "
                     f"{ms.mapping_net:.2f} | {ms.generator:.2f} | {ms.total:.2f} | "
                     f"{m.images_per_s:.2f} |")
    return lines


def released_notes(summary: BenchmarkSummary) -> list[str]:
    """Markdown lines naming the released files behind each authors' row, and the shared FaRL."""
    farl = summary.run.conventions.farl
    return [f"{m.label}: weights {', '.join(f'`{w}`' for w in m.weights)} (the preset's "
            "released files), on the same pairs and seeds as the other rows. Every row encodes "
            f"captions with the preset's FaRL `{farl}`; models trained here on another FaRL's "
            "embeddings get a caption encoder they were not trained with.\n"
            for m in summary.models if m.weights]


def render_report(summary: BenchmarkSummary) -> str:
    """The whole report.md."""
    models, run = summary.models, summary.run
    lines = ["# MM2Latent benchmark: text + mask (CelebA-Dialog captions, CelebAMask-HQ masks)", ""]
    if not run.makes_faces:
        lines += [TINY_WARNING, ""]
    lines += ["## Table 1", "", *table1(models), "",
              f"{run.pairs} pairs (seed {run.seed}, caption field `{run.caption_field}`), "
              f"the same for every model; {len(run.missing_captions)} annotated image(s) "
              "without a caption were skipped"
              + (f" (e.g. {', '.join(str(i) + '.jpg' for i in run.missing_captions[:5])})."
                 if run.missing_captions else "."), "", *released_notes(summary),
              "## Conventions", ""]
    lines += [f"- {c.format(**dataclasses.asdict(run.conventions))}" for c in CONVENTIONS]
    lines += ["", "## Latency", "", *latency_table(models), ""]
    if run.ablation:
        lines += [*ablation_tables(models), ""]
    columns = " | ".join(["mask", "caption", *(m.label for m in models)])
    lines += ["## Examples", "", f"Columns: {columns}.", "", f"![{columns}](grid.png)", ""]
    return "\n".join(lines)


def _caption_panel(text: str, size: int) -> np.ndarray:
    panel = Image.new("RGB", (size, size), "white")
    draw, font = ImageDraw.Draw(panel), ImageFont.load_default()
    words, lines, line = text.split(), [], ""
    for word in words:  # greedy wrap at ~6 px per character of the default font
        if len(line) + len(word) + 1 > max(size // 6, 8):
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    for row, content in enumerate(lines[: size // 12]):
        draw.text((3, 3 + 12 * row), content, fill="black", font=font)
    return np.asarray(panel)


def _fit(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    resample = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize((size, size), resample))


def example_grid(masks: Sequence[np.ndarray], captions: Sequence[str],
                 generated: Sequence[Sequence[np.ndarray]], size: int = 128) -> np.ndarray:
    """(rows * size, (2 + models) * size, 3) uint8: mask | caption | one column per model."""
    rows = []
    for mask, caption, images in zip(masks, captions, generated):
        cells = [_fit(colorize(mask), size, nearest=True), _caption_panel(caption, size)]
        cells += [_fit(image, size) for image in images]
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)
