"""CPU benchmark of CLIP/FaRL preprocessing: exact Pillow pixels (uint8 path) vs the float path.

Usage:
    python -m benchmarks.clip_preprocess                       # 16 images of 1024 px -> 224
    python -m benchmarks.clip_preprocess --batch 64 --side 256 --size 224

Times, on the same random uint8 batch and in this process: (1) `clip_preprocess` on uint8
(Pillow's own resize, one thread per core over the batch), (2) `clip_preprocess` on the same images as float in [0, 1]
(torch antialiased bicubic, within ~1/255 of Pillow; the path every image took before), and
(3) the reference: Pillow per image (Image.resize + crop + float + normalise), the official
pipeline. Reports ms per image, the ratios, and how many output values of (2) differ from (1).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_STD
from PIL import Image

from mm2latent.models.clip_towers import (_center_crop_offsets, _normalise, clip_preprocess,
                                          resized_size)


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def _pil_batch(arr: np.ndarray, size: int) -> torch.Tensor:
    """The official pipeline, one PIL image at a time."""
    out = []
    for image in arr:
        new_h, new_w = resized_size(image.shape[0], image.shape[1], size)
        top, left = _center_crop_offsets(new_h, new_w, size)
        img = Image.fromarray(image).resize((new_w, new_h), Image.BICUBIC)
        img = img.crop((left, top, left + size, top + size))
        out.append(torch.from_numpy(np.array(img)).permute(2, 0, 1))
    return _normalise(torch.stack(out).float() / 255)


def main() -> None:
    """Parse options, time the three paths, print a small table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="images per call")
    parser.add_argument("--side", type=int, default=1024, help="input H = W, pixels")
    parser.add_argument("--size", type=int, default=224, help="model input side, pixels")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per path (median)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (args.batch, args.side, args.side, 3), dtype=np.uint8)
    pixels = torch.from_numpy(arr).permute(0, 3, 1, 2)  # (B, 3, H, W) uint8
    floats = pixels.float() / 255
    exact = clip_preprocess(pixels, args.size)
    approx = clip_preprocess(floats, args.size)
    reference = _pil_batch(arr, args.size)
    ms = {"uint8 exact (threads)": _median_ms(lambda: clip_preprocess(pixels, args.size), args.repeats),
          "float (torch)": _median_ms(lambda: clip_preprocess(floats, args.size), args.repeats),
          "Pillow per image": _median_ms(lambda: _pil_batch(arr, args.size), args.repeats)}
    print(f"{args.batch} images {args.side} px -> {args.size}, torch threads "
          f"{torch.get_num_threads()}")
    for name, value in ms.items():
        print(f"  {name:22s} {value / args.batch:8.2f} ms/image  "
              f"({value / ms['float (torch)']:.2f}x the float path)")
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    steps = ((approx - reference) * std * 255).abs()  # uint8 steps off Pillow's pixels
    print(f"  uint8 path equals Pillow: {torch.equal(exact, reference)}; float path is >= 0.5 "
          f"uint8 step off in {(steps >= 0.5).float().mean().item():.1%} of values, max "
          f"{steps.max().item():.2f} steps")


if __name__ == "__main__":
    main()
