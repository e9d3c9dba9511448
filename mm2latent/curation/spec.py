"""The curation spec (YAML or CLI flags): filters, a balance target, the size and the seed.

    filters:
      drop_failed: true                 # samples whose annotation failed (manifest 'failed' rows)
      min_face_share: 0.2               # attribute mask.face below this is dropped
      ranges: {deca.yaw_deg: [-30, 30]} # attribute column -> [low, high], both inclusive
      near_duplicates: {vector: w, max_cosine: 0.95}   # the lower index of a pair is kept
    balance:
      attributes:
        glasses: {column: mask.eyeglasses, threshold: 0.01}        # binary: 'yes' at/above
        yaw: {column: deca.yaw_deg, bins: [-90, -15, 15, 90], labels: [left, front, right]}
      proportions: uniform              # or {"glasses=yes,yaw=front": 2, ...} (normalised)
    n: 200                              # samples to select; none = every sample that passes
    seed: 0                             # which samples a cell keeps when it has more than its quota

Parsed once into `CurationSpec`; an unknown key is refused with the valid ones listed. The
spec's hash (`spec_sha256`) identifies a curated dataset together with its source's hash.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mm2latent_core.errors import ConfigError

FACE_SHARE_COLUMN = "mask.face"  # the mask attribute the face-share filter reads
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")  # balance attribute names appear in cell keys
UNIFORM = "uniform"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NearDuplicates(_Strict):
    """Drop the higher index of every pair whose cosine exceeds `max_cosine` (greedy, ascending)."""

    vector: Literal["w", "farl"] = "w"  # manifest vector column compared
    max_cosine: float = Field(gt=-1.0, le=1.0)  # pairs with cosine strictly above are duplicates


class Filters(_Strict):
    """What is removed before balancing, applied in this order (the report counts each)."""

    drop_failed: bool = True  # drop rows with status 'failed' (they have no tar members)
    min_face_share: float | None = Field(None, ge=0.0, le=1.0)  # mask.face below: dropped; None = off
    ranges: dict[str, tuple[float, float]] = {}  # attribute column -> [low, high] kept (inclusive)
    near_duplicates: NearDuplicates | None = None  # None = no dedupe

    @field_validator("ranges")
    @classmethod
    def _ordered(cls, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for column, (low, high) in ranges.items():
            if not (math.isfinite(low) or math.isfinite(high)) or low > high:
                raise ValueError(f"range of {column!r} is [{low}, {high}]; give [low, high] with low <= high")
        return ranges


class BalanceAttribute(_Strict):
    """A binary (`threshold`) or binned (`bins`) view of one attribute column."""

    column: str = Field(min_length=1)  # attribute column, e.g. mask.eyeglasses or deca.yaw_deg
    threshold: float | None = None  # binary: 'yes' where value >= threshold, else 'no'
    bins: tuple[float, ...] | None = None  # binned: increasing edges; bin j = [e_j, e_j+1), last closed
    labels: tuple[str, ...] | None = None  # names of the bins (default 'lo..hi'); binary: no, yes

    @model_validator(mode="after")
    def _one_kind(self) -> BalanceAttribute:
        if (self.threshold is None) == (self.bins is None):
            raise ValueError("give exactly one of 'threshold' (binary) or 'bins' (binned)")
        if self.bins is not None:
            edges = self.bins
            if len(edges) < 2 or any(not b < a for b, a in zip(edges, edges[1:])):
                raise ValueError(f"bins {list(edges)} must be at least two increasing edges")
        if self.labels is not None and len(self.labels) != len(self.cell_labels()):
            raise ValueError(f"labels {list(self.labels)} must name all {len(self.cell_labels())} cells")
        return self

    def cell_labels(self) -> tuple[str, ...]:
        """The attribute's cell names, in cell order."""
        if self.bins is None:
            return self.labels or ("no", "yes")
        return self.labels or tuple(f"{lo:g}..{hi:g}" for lo, hi in zip(self.bins, self.bins[1:]))


class Balance(_Strict):
    """The target: joint cells of the named attributes, uniform or in given proportions."""

    attributes: dict[str, BalanceAttribute] = Field(min_length=1)  # name -> its binary / binned view
    proportions: Literal["uniform"] | dict[str, float] = UNIFORM  # cell key -> weight (normalised)

    @field_validator("attributes")
    @classmethod
    def _names(cls, attributes: dict[str, BalanceAttribute]) -> dict[str, BalanceAttribute]:
        for name in attributes:
            if not NAME_PATTERN.match(name):
                raise ValueError(f"attribute name {name!r} must be letters, digits, '_' or '-'")
        return attributes

    @model_validator(mode="after")
    def _known_cells(self) -> Balance:
        if self.proportions == UNIFORM:
            return self
        valid = set(self.cell_keys())
        unknown = [k for k in self.proportions if k not in valid]
        if unknown:
            raise ValueError(f"unknown cell(s) {unknown}; valid: {', '.join(self.cell_keys())}")
        values = list(self.proportions.values())
        if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
            raise ValueError("proportions must be finite, >= 0 and not all 0")
        return self

    def cell_keys(self) -> list[str]:
        """Every joint cell as 'name=label,name=label', first attribute slowest."""
        keys = [""]
        for name, attribute in self.attributes.items():
            keys = [f"{k},{name}={label}" if k else f"{name}={label}" for k in keys
                    for label in attribute.cell_labels()]
        return keys

    def weights(self) -> list[float]:
        """Target share of each cell (cell_keys order), summing to 1."""
        keys = self.cell_keys()
        if self.proportions == UNIFORM:
            return [1.0 / len(keys)] * len(keys)
        total = sum(self.proportions.values())
        return [self.proportions.get(k, 0.0) / total for k in keys]


class CurationSpec(_Strict):
    """A whole curation: filters, then an optional balance target, `n` samples, `seed`."""

    filters: Filters = Filters()
    balance: Balance | None = None
    n: int | None = Field(None, gt=0)  # samples to select; None = all that pass (balanced: the most
    #                                    that keep the proportions exact)
    seed: int = 0  # draws which samples a cell keeps; the choice never depends on shard layout

    def attribute_columns(self) -> list[str]:
        """Attribute columns the spec reads (filters and balance), sorted."""
        columns = set(self.filters.ranges)
        if self.filters.min_face_share is not None:
            columns.add(FACE_SHARE_COLUMN)
        if self.balance is not None:
            columns.update(a.column for a in self.balance.attributes.values())
        return sorted(columns)

    def to_json(self) -> dict[str, Any]:
        """The resolved spec, every default filled in (JSON values)."""
        return self.model_dump(mode="json")

    @property
    def sha256(self) -> str:
        """Hash of the resolved spec: two specs that select alike by construction hash alike."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


# Allowed keys per level, for the one-line "unknown key" message (pydantic's says only "extra").
_LEVELS: dict[str, type[BaseModel]] = {"": CurationSpec, "filters": Filters, "balance": Balance,
                                       "filters.near_duplicates": NearDuplicates}


def _check_keys(document: dict, where: str, url: str) -> None:
    """ConfigError naming the first unknown key and the valid keys at its level."""
    model = _LEVELS[where]
    for key, value in document.items():
        if key not in model.model_fields:
            place = f"{where}." if where else ""
            raise ConfigError(f"{url}: unknown key {place}{key!r}; valid keys there: "
                              f"{', '.join(model.model_fields)}.")
        child = f"{where}.{key}" if where else key
        if child in _LEVELS and isinstance(value, dict):
            _check_keys(value, child, url)
    if where == "balance" and isinstance(document.get("attributes"), dict):
        for name, body in document["attributes"].items():
            extra = sorted(set(body) - set(BalanceAttribute.model_fields)) if isinstance(body, dict) else []
            if extra:
                raise ConfigError(f"{url}: unknown key {extra[0]!r} in balance attribute {name!r}; "
                                  f"valid keys there: {', '.join(BalanceAttribute.model_fields)}.")


def spec_from_json(document: object, url: str = "spec") -> CurationSpec:
    """Validate a spec mapping (a parsed YAML file, flags, or a curated dataset's record)."""
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{url}: a curation spec is a mapping with keys "
                          f"{', '.join(CurationSpec.model_fields)}.")
    _check_keys(document, "", url)
    try:
        return CurationSpec.model_validate(document)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}"
                             for err in e.errors())
        raise ConfigError(f"{url}: invalid curation spec: {problems}.") from e


def parse_spec(text: str | None, overrides: dict[tuple[str, ...], Any] | None = None,
               url: str = "spec") -> CurationSpec:
    """Parse a YAML spec (None = empty) and apply flag overrides; validate once.

    Args:
        text: the YAML document, or None when only flags give the spec.
        overrides: key path -> value replacing what the file says there, e.g.
            {('n',): 100, ('filters', 'ranges', 'deca.yaw_deg'): [-30, 30]} (attribute
            columns contain dots, hence paths rather than dotted strings).
        url: named in messages (the spec file, or 'flags').
    """
    try:
        document = yaml.safe_load(text) if text else {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{url}: not valid YAML ({e}).") from e
    if document is None:
        document = {}
    if not isinstance(document, dict):
        return spec_from_json(document, url)
    for path, value in (overrides or {}).items():
        node = document
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = child if isinstance(child, dict) else {}
            node = child
        node[path[-1]] = value
    return spec_from_json(document, url)
