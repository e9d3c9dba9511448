"""A small model registry: one immutable JSON file per registered model version.

`<registry>/<name>/v<version, 6 digits>.json` holds one record: a monotonic integer version per
name, its metrics, the dataset (URL and hash) it was trained on, its training config and its
checkpoint location. Locations inside the registry's filesystem are stored relative to the
registry directory, so a registry and its runs can be moved, copied or read from elsewhere.

Concurrent registrations are safe: a version is claimed by creating its file exclusively
(storage/exclusive.py), and a writer that loses the race takes the next number, so two runs
never share a version and no registration is lost (local disk, memory:// and s3://, where the
claim is a conditional write; stores that cannot create a file only if it is absent are refused). Registries written before this layout kept every record in one
`registry.json`; it is still read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from mm2latent_core.errors import TrainingError
from storage.exclusive import create_exclusive
from storage.fs import join, list_names, read_file
from storage.locations import relative_location, resolve_location


def default_registry_url(out: str) -> str:
    """Where `mm2latent train --out OUT` registers models unless told otherwise: OUT/registry."""
    return join(out, "registry")

logger = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"  # the single-file layout of older registries (read only)
REGISTRY_FORMAT = 1
_RECORD_RE = re.compile(r"^v(\d{6})\.json$")


@dataclass(frozen=True)
class ModelRecord:
    """One registered model version."""

    name: str  # model family, e.g. "mask-ae", "mapping-mask"
    version: int  # 1, 2, ... per name, never reused
    created: str  # ISO-8601 UTC time of registration
    checkpoint_url: str  # the `fit` checkpoint holding the weights (resolved when read)
    dataset_url: str  # where the training data was read
    dataset_hash: str  # mm2latent.training.data.dataset_hash (embeddings folded in for mappings)
    metrics: dict = field(default_factory=dict)  # e.g. {"val_loss": 0.12, "epoch": 9}
    config: dict = field(default_factory=dict)  # training + architecture config
    extra: dict = field(default_factory=dict)  # anything else (e.g. embeddings_version, shards)

    @property
    def tag(self) -> str:
        """`<name>-v<version>`, e.g. "mask-ae-v3"."""
        return f"{self.name}-v{self.version}"


class ModelRegistry:
    """Read and append to the registry at `url` (a directory; local, memory:// or s3://).

    Args:
        url: registry directory; created on the first register.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.index_url = url  # named in error messages

    def _record_url(self, name: str, version: int) -> str:
        return join(self.url, name, f"v{version:06d}.json")

    def _legacy(self) -> dict[str, list[ModelRecord]]:
        """Records of the older single-file layout by name (empty when there is none)."""
        url = join(self.url, REGISTRY_FILE)
        try:
            raw = read_file(url)
        except FileNotFoundError:
            return {}
        models = _json_object(url, raw).get("models")
        if not isinstance(models, dict):
            raise _unreadable(url, "no 'models'")
        return {name: [_stored_record(url, doc) for doc in docs] for name, docs in models.items()}

    def _versions(self, name: str) -> list[int]:
        """Version numbers with a record file under `<registry>/<name>/`, ascending."""
        found = (_RECORD_RE.match(entry) for entry in list_names(join(self.url, name)))
        return sorted(int(m.group(1)) for m in found if m)

    def records(self, name: str) -> list[ModelRecord]:
        """Every version of `name`, oldest first (empty if none)."""
        stored = {r.version: r for r in self._legacy().get(name, [])}
        for version in self._versions(name):
            url = self._record_url(name, version)
            stored[version] = _stored_record(url, _json_object(url, read_file(url)))
        return [dataclasses.replace(stored[v], checkpoint_url=resolve_location(
            self.url, stored[v].checkpoint_url)) for v in sorted(stored)]

    def names(self) -> list[str]:
        """Registered model names, sorted."""
        dirs = list_names(self.url)
        return sorted(set(self._legacy()) | {d for d in dirs if self._versions(d)})

    def latest(self, name: str) -> ModelRecord | None:
        """The highest version of `name`, or None if it was never registered."""
        records = self.records(name)
        return records[-1] if records else None

    def get(self, name: str, version: int) -> ModelRecord:
        """Version `version` of `name`; TrainingError listing the known versions otherwise."""
        records = self.records(name)
        for record in records:
            if record.version == version:
                return record
        known = ", ".join(str(r.version) for r in records) or "none"
        raise TrainingError(f"{self.index_url}: no {name!r} version {version}; known: {known}.")

    def register(self, name: str, checkpoint_url: str, dataset_url: str, dataset_hash: str,
                 metrics: dict | None = None, config: dict | None = None,
                 extra: dict | None = None) -> ModelRecord:
        """Add the next version of `name`; safe against concurrent registrations (see module doc)."""
        stored = relative_location(self.url, checkpoint_url)
        legacy = [r.version for r in self._legacy().get(name, [])]
        version = max([0, *legacy, *self._versions(name)]) + 1
        while True:
            record = ModelRecord(
                name=name, version=version, created=dt.datetime.now(dt.timezone.utc).isoformat(),
                checkpoint_url=stored, dataset_url=dataset_url, dataset_hash=dataset_hash,
                metrics=dict(metrics or {}), config=dict(config or {}), extra=dict(extra or {}))
            doc = {"format": REGISTRY_FORMAT, **dataclasses.asdict(record)}
            text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
            if create_exclusive(self._record_url(name, version), text.encode()):
                break
            version += 1  # another run claimed this number first: take the next one
        logger.info("registered %s (%s)", record.tag, checkpoint_url)
        return dataclasses.replace(record, checkpoint_url=resolve_location(self.url, stored))


def _unreadable(url: str, problem: object) -> TrainingError:
    return TrainingError(f"{url}: unreadable model registry ({problem}). Fix: restore it from a "
                         "backup or point --registry elsewhere.")


def _json_object(url: str, raw: bytes) -> dict[str, Any]:
    """The JSON object in registry file `url`, checked for this layout's format number."""
    try:
        doc = json.loads(raw)
        if doc.get("format") != REGISTRY_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {REGISTRY_FORMAT}")
        return doc
    except (ValueError, AttributeError) as e:
        raise _unreadable(url, e) from e


def _stored_record(url: str, doc: object) -> ModelRecord:
    """A record as stored in file `url` (checkpoint location not yet resolved); unknown keys,
    such as the file's format number, are ignored."""
    if not isinstance(doc, dict):
        raise _unreadable(url, f"a record is a {type(doc).__name__}, not an object")
    names = {f.name for f in dataclasses.fields(ModelRecord)}
    try:
        return ModelRecord(**{k: v for k, v in doc.items() if k in names})
    except TypeError as e:  # a required field is missing
        raise _unreadable(url, e) from e
