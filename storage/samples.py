"""One sample of a dataset by its global index: raw tar members, and `DATASET#INDEX` references.

A reference `data/tiny#12` names sample 12 of the dataset at `data/tiny` (any fsspec URL);
its shard is index // samples_per_shard from dataset.json, and only that shard's tar is read.
Before it is read it is checked as every reader checks (storage/shard_check.py), limited to
that shard: dataset.json, the shard's stats file, then the size and sha256 of its one tar.
"""

from __future__ import annotations

import re
import tarfile

from mm2latent_core.errors import DatasetError
from storage.atomic import atomic_write_bytes
from storage.dataset_index import shard_url
from storage.fs import join, open_fs
from storage.shard_check import REPAIR_FIX, checked_index, checked_shard
from storage.shard_writer import sample_key

_REF = re.compile(r"^(?P<dataset>.+)#(?P<index>\d+)$")


def parse_sample_ref(ref: str) -> tuple[str, int] | None:
    """(dataset URL, index) of a `DATASET#INDEX` reference, or None if `ref` is not one."""
    match = _REF.match(ref)
    return None if match is None else (match["dataset"], int(match["index"]))


def read_sample_members(dataset_url: str, index: int) -> dict[str, bytes]:
    """Tar members (extension -> bytes) of sample `index`; DatasetError naming the fix if absent."""
    info = checked_index(dataset_url)
    if not 0 <= index < info.num_samples:
        raise DatasetError(f"{dataset_url}: no sample {index}; it holds samples 0..{info.num_samples - 1}.")
    shard = index // info.samples_per_shard
    if not checked_shard(dataset_url, info, shard, ("tar",)):  # sha256 of this one shard only
        raise DatasetError(f"{dataset_url}: shard {shard} holding sample {index} is incomplete. "
                           "Fix: re-run the command that writes the dataset.")
    url = shard_url(dataset_url, shard, "tar")
    prefix = sample_key(index) + "."
    members: dict[str, bytes] = {}
    fs, path = open_fs(url)
    try:
        with fs.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:  # streamed: the shard is read once, front to back
                if member.isfile() and member.name.startswith(prefix):
                    members[member.name[len(prefix):]] = tar.extractfile(member).read()
    except tarfile.TarError as e:  # the digest matched, yet the bytes are no tar
        raise DatasetError(f"{url}: unreadable tar ({e}). {REPAIR_FIX}") from e
    if not members:
        raise DatasetError(f"{dataset_url}: sample {index} failed when the dataset was made (no "
                           "members in its shard); its parquet row holds the error. Pick another index.")
    return members


# Tar extension -> exported file name: the names the README's generate / edit examples use.
EXPORT_NAMES = {"png": "image.png", "jpg": "image.jpg", "mask.png": "mask.png",
                "sketch.png": "sketch.png", "flame.npy": "flame.npy", "w.npy": "w.npy",
                "farl.npy": "farl.npy", "json": "sample.json"}


def export_sample(dataset_url: str, index: int, out_url: str) -> list[str]:
    """Write sample `index`'s members as plain files under `out_url`; return their URLs.

    Files are byte copies of the tar members (image.png, mask.png, sketch.png, flame.npy, ...),
    so they load with `generate --mask`, `edit IMAGE` and `--flame` exactly as stored.
    """
    written = []
    for ext, data in sorted(read_sample_members(dataset_url, index).items()):
        if ext in EXPORT_NAMES:
            url = join(out_url, EXPORT_NAMES[ext])
            atomic_write_bytes(url, data)
            written.append(url)
    return written


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def list_images(folder_url: str) -> list[str]:
    """URLs of the image files directly in a folder, sorted by name; DatasetError if none."""
    fs, root = open_fs(folder_url)
    if not fs.isdir(root):
        raise DatasetError(f"{folder_url}: not a folder of images nor a dataset (no dataset.json).")
    names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    images = [join(folder_url, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    if not images:
        raise DatasetError(f"{folder_url}: no image files ({', '.join(IMAGE_SUFFIXES)}).")
    return images


def read_bytes(url: str, what: str = "file") -> bytes:
    """The bytes at `url`; DatasetError naming the file when it does not exist."""
    fs, path = open_fs(url)
    try:
        return fs.cat_file(path)
    except FileNotFoundError as e:
        raise DatasetError(f"{what} {url} does not exist.") from e
