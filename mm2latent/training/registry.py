"""A small model registry: one JSON index of trained models under a registry URL.

`<registry>/registry.json` = {"format": 1, "models": {name: [record, ...]}}; each record has a
monotonic integer version per name, its metrics, the dataset (URL and hash) it was trained on,
its training config and checkpoint URL. The file is rewritten atomically on every register;
writers are expected to run one at a time (the scheduled `retrain` is a single flow run).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from dataclasses import dataclass, field

from mm2latent.errors import TrainingError
from storage.atomic import atomic_write_bytes
from storage.fs import join, open_fs


def default_registry_url(out: str) -> str:
    """Where `mm2latent train --out OUT` registers models unless told otherwise: OUT/registry."""
    return join(out, "registry")

logger = logging.getLogger(__name__)

REGISTRY_FILE = "registry.json"
REGISTRY_FORMAT = 1


@dataclass(frozen=True)
class ModelRecord:
    """One registered model version."""

    name: str  # model family, e.g. "mask-ae", "mapping-mask"
    version: int  # 1, 2, ... per name, never reused
    created: str  # ISO-8601 UTC time of registration
    checkpoint_url: str  # the `fit` checkpoint holding the weights
    dataset_url: str  # where the training data was read
    dataset_hash: str  # mm2latent.training.data.dataset_hash (embeddings folded in for mappings)
    metrics: dict = field(default_factory=dict)  # e.g. {"val_loss": 0.12, "epoch": 9}
    config: dict = field(default_factory=dict)  # training + architecture config
    extra: dict = field(default_factory=dict)  # anything else (e.g. embeddings_version, shards)

    @property
    def tag(self) -> str:
        """`<name>-v<version>`, e.g. the embeddings directory of an autoencoder."""
        return f"{self.name}-v{self.version}"


class ModelRegistry:
    """Read and append to the registry at `url` (a directory; local, memory:// or s3://).

    Args:
        url: registry directory; `registry.json` is created on the first register.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.index_url = join(url, REGISTRY_FILE)

    def _read(self) -> dict[str, list[dict]]:
        fs, path = open_fs(self.index_url)
        try:
            raw = fs.cat_file(path)
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
            if doc.get("format") != REGISTRY_FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {REGISTRY_FORMAT}")
            return doc["models"]
        except (ValueError, KeyError, AttributeError) as e:
            raise TrainingError(f"{self.index_url}: unreadable model registry ({e}). Fix: restore "
                                "it from a backup or point --registry elsewhere.") from e

    def records(self, name: str) -> list[ModelRecord]:
        """Every version of `name`, oldest first (empty if none)."""
        return [ModelRecord(**r) for r in self._read().get(name, [])]

    def names(self) -> list[str]:
        """Registered model names, sorted."""
        return sorted(self._read())

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
        """Append a new version of `name` (previous version + 1) and rewrite the index atomically."""
        models = self._read()
        previous = models.get(name, [])
        version = previous[-1]["version"] + 1 if previous else 1
        record = ModelRecord(
            name=name, version=version, created=dt.datetime.now(dt.timezone.utc).isoformat(),
            checkpoint_url=checkpoint_url, dataset_url=dataset_url, dataset_hash=dataset_hash,
            metrics=dict(metrics or {}), config=dict(config or {}), extra=dict(extra or {}))
        models[name] = [*previous, dataclasses.asdict(record)]
        text = json.dumps({"format": REGISTRY_FORMAT, "models": models}, indent=2, sort_keys=True)
        atomic_write_bytes(self.index_url, (text + "\n").encode())
        logger.info("registered %s (%s)", record.tag, checkpoint_url)
        return record
