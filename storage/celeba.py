"""Readers for the official CelebAMask-HQ and CelebA-Dialog layouts, and the merged-mask cache.

CelebAMask-HQ root:
    CelebA-HQ-img/{k}.jpg
    CelebAMask-HQ-mask-anno/{k // 2000}/{k:05d}_{class}.png   (one binary 512 px PNG per class)
CelebA-Dialog: captions_hq.json (any URL).

Merged 19-class maps are cached as PNGs named by the id and a digest of the source files'
names, sizes and modification times, so an edited annotation gives a new cache entry.
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mm2latent_core.errors import DatasetError
from storage.atomic import atomic_write_bytes
from storage.fs import join, open_fs

logger = logging.getLogger(__name__)

IMAGE_DIR = "CelebA-HQ-img"
ANNOTATION_DIR = "CelebAMask-HQ-mask-anno"
IDS_PER_FOLDER = 2000  # annotation k lives in folder k // 2000
_ANNOTATION = re.compile(r"^(\d{5})_([a-z_]+)\.png$")
_LAYOUT_FIX = ("Fix: point --celebamask at the folder that holds CelebAMask-HQ-mask-anno/ "
               "(and CelebA-HQ-img/), e.g. data/CelebAMask-HQ.")


@dataclass(frozen=True)
class SourceFile:
    """One annotation PNG as listed: path inside its filesystem, size and modification time."""

    path: str
    size: int
    mtime: str  # str() of whatever time the filesystem reports (mtime, LastModified, created)


@dataclass(frozen=True)
class CelebAMaskIndex:
    """Listing of a CelebAMask-HQ root: {id: {class name: SourceFile}}."""

    root: str
    annotations: Mapping[int, Mapping[str, SourceFile]]

    def ids(self) -> list[int]:
        """Annotated ids, ascending."""
        return sorted(self.annotations)

    def stamp(self, image_id: int) -> str:
        """Digest of the id's source files (names, sizes, mtimes): the cache key of its map."""
        text = "\n".join(f"{c}\t{f.size}\t{f.mtime}" for c, f in
                         sorted(self.annotations[image_id].items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mtime(info: Mapping) -> str:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        if info.get(key) is not None:
            return str(info[key])
    return ""


def scan_celebamask(root: str, known_classes: tuple[str, ...]) -> CelebAMaskIndex:
    """List the annotation PNGs under `root`; DatasetError if the layout is not the official one.

    Args:
        root: the CelebAMask-HQ folder (local path or fsspec URL).
        known_classes: the valid class names of file names; other files are skipped with a warning.
    """
    fs, base = open_fs(join(root, ANNOTATION_DIR))
    if not fs.isdir(base):
        raise DatasetError(f"{root}: no {ANNOTATION_DIR}/ folder. {_LAYOUT_FIX}")
    annotations: dict[int, dict[str, SourceFile]] = {}
    skipped = []
    for path, info in sorted(fs.find(base, detail=True).items()):
        match = _ANNOTATION.match(posixpath.basename(path))
        folder = posixpath.basename(posixpath.dirname(path))
        if not match or match[2] not in known_classes or folder != str(int(match[1]) // IDS_PER_FOLDER):
            skipped.append(path)
            continue
        annotations.setdefault(int(match[1]), {})[match[2]] = SourceFile(
            path, int(info.get("size") or 0), _mtime(info))
    if skipped:
        logger.warning("%s: skipped %d file(s) outside the official naming, e.g. %s", root,
                       len(skipped), skipped[0])
    if not annotations:
        raise DatasetError(f"{root}: {ANNOTATION_DIR}/ holds no '<k // 2000>/<k:05d>_<class>.png' "
                           f"files. {_LAYOUT_FIX}")
    return CelebAMaskIndex(root=root, annotations=annotations)


def _decode_png(data: bytes, what: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image)
    except OSError as e:
        raise DatasetError(f"{what}: not a readable PNG ({e}).") from e


def read_class_masks(index: CelebAMaskIndex, image_id: int) -> dict[str, np.ndarray]:
    """{class name: PNG array} of one id's annotation files."""
    fs, _ = open_fs(index.root)
    return {name: _decode_png(fs.cat_file(f.path), f.path)
            for name, f in index.annotations[image_id].items()}


def merged_mask(index: CelebAMaskIndex, image_id: int, cache_url: str,
                merge: Callable[[Mapping[str, np.ndarray]], np.ndarray]) -> np.ndarray:
    """The id's merged label map: from the cache if its sources are unchanged, else merged now.

    Args:
        index: the listing from scan_celebamask.
        image_id: CelebAMask-HQ id.
        cache_url: folder of cached maps (created on first write).
        merge: {class: array} -> (H, W) uint8 labels (mm2latent.benchmark.masks.merge_class_masks).
    """
    url = join(cache_url, f"{image_id:05d}-{index.stamp(image_id)}.png")
    fs, path = open_fs(url)
    if fs.exists(path):
        return _decode_png(fs.cat_file(path), url)
    labels = merge(read_class_masks(index, image_id))
    buffer = io.BytesIO()
    Image.fromarray(labels).save(buffer, format="PNG", optimize=False, compress_level=6)
    atomic_write_bytes(url, buffer.getvalue())
    return labels


def read_captions_file(url: str) -> bytes:
    """The bytes of CelebA-Dialog's captions_hq.json; DatasetError if it is missing."""
    fs, path = open_fs(url)
    if not fs.isfile(path):
        raise DatasetError(f"{url}: no such file. Fix: point --captions at CelebA-Dialog's "
                           "captions_hq.json.")
    return fs.cat_file(path)
