"""The curation report: per attribute, histograms before and after; balance cells; filter counts.

Histograms stream the source's attribute tables twice, one shard at a time (range, then
counts), so the report's memory is a few numbers per attribute, whatever the dataset's size.
`curation.json` holds everything; `curation.png` draws one panel per attribute (grey: the
source's share per bin, blue: the curated dataset's), in the order the attributes come.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from mm2latent.curation.select import AttributeReader, CellCount, Selection

BINS = 20
_PANEL = (220, 120)  # width, height of one attribute's panel, pixels
_COLUMNS = 4  # panels per row
_BEFORE, _AFTER = (170, 170, 170), (31, 119, 180)


@dataclass(frozen=True)
class Histogram:
    """One attribute's counts over fixed bins, in the source and in the curated dataset."""

    column: str
    edges: list[float]  # BINS + 1 edges over the source's finite range
    before: list[int]  # source samples per bin
    after: list[int]  # selected samples per bin
    missing_before: int  # source samples without a finite value
    missing_after: int


@dataclass(frozen=True)
class CurationReport:
    """What `curation.json` holds."""

    source: str
    out: str
    source_hash: str
    spec_sha256: str
    spec: dict
    source_rows: int  # manifest rows of the source, failed ones included
    selected: int
    removed: dict[str, int]  # filter -> samples it removed, in the order filters apply
    outside_cells: int  # passed the filters, in no balance cell
    not_drawn: int  # passed everything, not drawn (n smaller than what passed)
    cells: list[CellCount]
    histograms: list[Histogram]

    def to_json_bytes(self) -> bytes:
        """Indented, sorted-key JSON."""
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()


def _ranges(dataset_url: str, read_attributes: AttributeReader) -> dict[str, tuple[float, float]]:
    """column -> (min, max) of its finite values over every shard (pass 1)."""
    ranges: dict[str, tuple[float, float]] = {}
    for _, table in read_attributes(dataset_url, None):
        for column in table.column_names[1:]:
            values = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
            values = values[np.isfinite(values)]
            if len(values):
                low, high = ranges.get(column, (math.inf, -math.inf))
                ranges[column] = (min(low, float(values.min())), max(high, float(values.max())))
            else:
                ranges.setdefault(column, (math.inf, -math.inf))
    return ranges


def histograms(dataset_url: str, selection: Selection, read_attributes: AttributeReader,
               bins: int = BINS) -> list[Histogram]:
    """Before/after histograms of every attribute column of the source, two streaming passes."""
    ranges = _ranges(dataset_url, read_attributes)
    edges = {}
    for column, (low, high) in ranges.items():
        if not math.isfinite(low):
            low, high = 0.0, 1.0
        if high <= low:
            low, high = low - 0.5, high + 0.5
        edges[column] = np.linspace(low, high, bins + 1)
    counts = {c: [np.zeros(bins, np.int64), np.zeros(bins, np.int64), 0, 0] for c in ranges}
    chosen = selection.source_indices
    for _, table in read_attributes(dataset_url, None):
        picked = np.isin(table["index"].to_numpy(), chosen)
        for column in table.column_names[1:]:
            values = table[column].to_numpy(zero_copy_only=False).astype(np.float64)
            finite = np.isfinite(values)
            acc = counts[column]
            acc[0] += np.histogram(values[finite], edges[column])[0]
            acc[1] += np.histogram(values[finite & picked], edges[column])[0]
            acc[2] += int(np.sum(~finite))
            acc[3] += int(np.sum(~finite & picked))
    return [Histogram(c, edges[c].tolist(), a[0].tolist(), a[1].tolist(), a[2], a[3])
            for c, a in counts.items()]


def _panel(hist: Histogram) -> Image.Image:
    """One attribute: source (grey) and curated (blue) shares per bin, side by side."""
    width, height = _PANEL
    image = Image.new("RGB", _PANEL, "white")
    draw = ImageDraw.Draw(image)
    top, bottom = 16, height - 14
    before = np.asarray(hist.before, float) / max(sum(hist.before), 1)
    after = np.asarray(hist.after, float) / max(sum(hist.after), 1)
    peak = max(before.max(initial=0.0), after.max(initial=0.0)) or 1.0
    step = (width - 8) / len(before)
    for j, (b, a) in enumerate(zip(before, after)):
        x = 4 + j * step
        for offset, share, colour in ((0.0, b, _BEFORE), (step / 2, a, _AFTER)):
            y = bottom - (bottom - top) * share / peak
            draw.rectangle([x + offset, y, x + offset + step / 2 - 1, bottom], fill=colour)
    draw.line([4, bottom, width - 4, bottom], fill=(0, 0, 0))
    draw.text((4, 2), hist.column[:34], fill=(0, 0, 0))
    draw.text((4, bottom + 1), f"{hist.edges[0]:.3g}", fill=(0, 0, 0))
    draw.text((width - 44, bottom + 1), f"{hist.edges[-1]:.3g}", fill=(0, 0, 0))
    return image


def contact_sheet_png(hists: Sequence[Histogram], title: str = "") -> bytes:
    """PNG bytes: one panel per attribute, _COLUMNS per row, a title line on top."""
    width, height = _PANEL
    rows = max(1, -(-len(hists) // _COLUMNS))
    sheet = Image.new("RGB", (width * _COLUMNS, 18 + height * rows), "white")
    ImageDraw.Draw(sheet).text((4, 3), title + "   grey: source   blue: curated (share per bin)",
                               fill=(0, 0, 0))
    for k, hist in enumerate(hists):
        sheet.paste(_panel(hist), ((k % _COLUMNS) * width, 18 + (k // _COLUMNS) * height))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def markdown(report: CurationReport) -> str:
    """The report as Markdown (the Prefect artifact's text, without the image)."""
    lines = [f"# curate: {report.out}", "",
             f"{report.selected} of {report.source_rows} source samples selected from "
             f"`{report.source}` (source hash `{report.source_hash[:12]}`, spec `{report.spec_sha256[:12]}`).",
             "", "| filter | removed |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in report.removed.items()]
    if report.cells:
        lines += ["", "| balance cell | target share | available | selected |", "|---|---|---|---|"]
        lines += [f"| {c.key} | {c.share:.3f} | {c.available} | {c.selected} |" for c in report.cells]
        lines += ["", f"Outside every cell: {report.outside_cells}; not drawn: {report.not_drawn}."]
    return "\n".join(lines)
