"""A small CelebAMask-HQ + CelebA-Dialog fixture in the official layouts (tests, the tiny run).

    <root>/CelebAMask-HQ/CelebA-HQ-img/{k}.jpg
    <root>/CelebAMask-HQ/CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{class}.png   (512 px, 0/255)
    <root>/CelebA-Dialog/captions_hq.json

Masks are overlapping ellipses (skin, hair over skin, eyes, nose, mouth, neck, cloth), so the
merge order matters; one id has no caption, as 5380.jpg in the real file. Not faces.

    python -m mm2latent.benchmark.fixture data/benchmark-fixture
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from mm2latent.benchmark.masks import MASK_SIZE
from mm2latent.fabricate.datasets import png_bytes
from storage.atomic import atomic_write_bytes
from storage.celeba import ANNOTATION_DIR, IDS_PER_FOLDER, IMAGE_DIR
from storage.fs import join

logger = logging.getLogger(__name__)

FIXTURE_IDS = (0, 1, 2, 3, 5, 8, 13, 1999, 2000, 2001, 4005, 5380)
NO_CAPTION = (5380,)  # like the real captions_hq.json
_PARTS = (  # class, ellipse (x0, y0, x1, y1) as fractions of the side; later ones overlap earlier
    ("cloth", (0.05, 0.80, 0.95, 1.30)), ("neck", (0.35, 0.65, 0.65, 0.95)),
    ("hair", (0.15, 0.02, 0.85, 0.36)), ("skin", (0.25, 0.20, 0.75, 0.80)),
    ("l_eye", (0.33, 0.40, 0.45, 0.46)), ("r_eye", (0.55, 0.40, 0.67, 0.46)),
    ("nose", (0.45, 0.45, 0.55, 0.60)), ("u_lip", (0.40, 0.63, 0.60, 0.68)),
    ("l_lip", (0.40, 0.67, 0.60, 0.72)), ("eye_g", (0.30, 0.37, 0.70, 0.49)),
)
_WORDS = ("The woman", "This man", "The person", "She", "He")
_TRAITS = ("is smiling broadly", "has bangs", "wears eyeglasses", "is young", "has no beard",
           "has a neutral expression")


@dataclass(frozen=True)
class FixtureUrls:
    """Where the fixture's parts are: what to pass as --celebamask, --captions, --reference."""

    celebamask: str  # CelebAMask-HQ root
    captions: str  # CelebA-Dialog captions_hq.json
    reference: str  # the fixture's images, the CMMD reference


def fixture_urls(root: str) -> FixtureUrls:
    """The URLs of the fixture written (or to be written) under `root`."""
    celebamask = join(root, "CelebAMask-HQ")
    return FixtureUrls(celebamask, join(root, "CelebA-Dialog", "captions_hq.json"),
                       join(celebamask, IMAGE_DIR))


def _ellipse(box: tuple[float, ...], jitter: np.ndarray) -> np.ndarray:
    image = Image.new("L", (MASK_SIZE, MASK_SIZE), 0)
    x0, y0, x1, y1 = (np.array(box) + jitter) * MASK_SIZE
    ImageDraw.Draw(image).ellipse((x0, y0, x1, y1), fill=255)
    return np.asarray(image)


def _caption(rng: np.random.Generator) -> dict:
    traits = rng.choice(len(_TRAITS), size=2, replace=False)
    overall = f"{_WORDS[rng.integers(len(_WORDS))]} {_TRAITS[traits[0]]} and {_TRAITS[traits[1]]}."
    attributes = {k: f"{k.replace('_', ' ').lower()} level {int(rng.integers(0, 6))}."
                  for k in ("Bangs", "Eyeglasses", "No_Beard", "Smiling", "Young")}
    return {"overall_caption": overall, "attribute_wise_captions": attributes}


def write_fixture(root: str, ids: tuple[int, ...] = FIXTURE_IDS, image_size: int = 64,
                  seed: int = 0) -> FixtureUrls:
    """Write the fixture under `root`; the URLs to pass as --celebamask, --captions, --reference."""
    urls = fixture_urls(root)
    captions = {}
    for k in ids:
        rng = np.random.default_rng([seed, k])
        for name, box in _PARTS:
            if name in ("eye_g", "cloth") and rng.random() < 0.5:
                continue  # absent classes have no file, as in the real annotations
            dx, dy = rng.uniform(-0.03, 0.03, 2)  # the whole part moves a little
            mask = _ellipse(box, np.array([dx, dy, dx, dy]))
            atomic_write_bytes(join(urls.celebamask, ANNOTATION_DIR, str(k // IDS_PER_FOLDER),
                                    f"{k:05d}_{name}.png"), png_bytes(mask))
        pixels = rng.integers(0, 256, (image_size // 8, image_size // 8, 3), dtype=np.uint8)
        photo = Image.fromarray(pixels).resize((image_size, image_size), Image.BILINEAR)
        buffer = io.BytesIO()
        photo.save(buffer, format="JPEG", quality=90)
        atomic_write_bytes(join(urls.reference, f"{k}.jpg"), buffer.getvalue())
        if k not in NO_CAPTION:
            captions[f"{k}.jpg"] = _caption(rng)
    atomic_write_bytes(urls.captions, json.dumps(captions, indent=1, sort_keys=True).encode())
    logger.info("wrote the benchmark fixture (%d ids, not faces) under %s", len(ids), root)
    return urls


def main() -> None:
    """`python -m mm2latent.benchmark.fixture ROOT`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", help="folder (or fsspec URL) to write the fixture into")
    parser.add_argument("--image-size", type=int, default=64, help="side of the CelebA-HQ-img JPEGs")
    args = parser.parse_args()
    for key, url in dataclasses.asdict(write_fixture(args.root, image_size=args.image_size)).items():
        print(f"--{key} {url}")


if __name__ == "__main__":
    main()
