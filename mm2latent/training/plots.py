"""Loss curves as a PNG, drawn with PIL (matplotlib is not a dependency of this project)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from mm2latent.training.reports import EpochMetrics

_COLOURS = {"train_loss": (31, 119, 180), "val_loss": (255, 127, 14)}
_SIZE = (640, 400)  # width, height in pixels
_MARGIN = (60, 20, 20, 40)  # left, top, right, bottom


def _scale(values: list[float]) -> tuple[float, float]:
    """(low, high) of log10 of the positive values, padded so a flat curve still has height."""
    logs = [math.log10(v) for v in values if v > 0 and math.isfinite(v)]
    if not logs:
        return 0.0, 1.0
    low, high = min(logs), max(logs)
    pad = max(0.05 * (high - low), 0.05)
    return low - pad, high + pad


def loss_curves_png(history: Sequence[EpochMetrics], title: str = "") -> bytes:
    """PNG bytes of train/val loss against epoch (log y axis) from `fit`'s history rows.

    Args:
        history: `fit`'s rows; a loss a row lacks (val_loss without a split) is not drawn.
        title: text drawn at the top left.
    """
    width, height = _SIZE
    left, top, right, bottom = _MARGIN
    image = Image.new("RGB", _SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    series = {k: [(r.epoch, r.losses[k]) for r in history if k in r.losses] for k in _COLOURS}
    low, high = _scale([v for points in series.values() for _, v in points])
    last_epoch = max((r.epoch for r in history), default=0) or 1

    def xy(epoch: float, value: float) -> tuple[float, float]:
        x = left + (width - left - right) * epoch / last_epoch
        y_frac = (math.log10(max(value, 1e-30)) - low) / (high - low)
        return x, height - bottom - (height - top - bottom) * y_frac

    for i, (name, points) in enumerate(series.items()):
        if not points:
            continue
        coords = [xy(e, v) for e, v in points]
        if len(coords) > 1:
            draw.line(coords, fill=_COLOURS[name], width=2)
        for x, y in coords:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=_COLOURS[name])
        draw.text((width - right - 90, top + 6 + 14 * i), name, fill=_COLOURS[name])
    draw.text((4, top), f"{10 ** high:.3g}", fill=(0, 0, 0))
    draw.text((4, height - bottom - 12), f"{10 ** low:.3g}", fill=(0, 0, 0))
    draw.text((left, height - bottom + 6), "epoch 0", fill=(0, 0, 0))
    draw.text((width - right - 60, height - bottom + 6), f"epoch {last_epoch}", fill=(0, 0, 0))
    if title:
        draw.text((left + 6, top + 6), title, fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
