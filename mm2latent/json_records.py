"""JSON form of the typed records that cross layers and go to disk or into Prefect artifacts.

A record is a frozen dataclass read by attribute; `to_json` gives the exact keys its file has
always held, `from_json` reads such a file back. `JsonRecord` gives both to a dataclass whose
fields are JSON values or other records; a record with another JSON shape writes its own pair.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from mm2latent_core.errors import ConfigError


def json_values(value: object) -> Any:
    """`value` as parsed JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def fields_of(names: Sequence[str], data: Mapping[str, Any], what: str) -> dict[str, Any]:
    """The values under `names` in `data` (lists as tuples); ConfigError naming a missing one."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what}: expected a JSON object, got {type(data).__name__}.")
    missing = [n for n in names if n not in data]
    if missing:
        raise ConfigError(f"{what}: missing field(s) {', '.join(missing)} (present: "
                          f"{', '.join(sorted(data)) or 'none'}); the file is not a {what} "
                          "written by mm2latent. Fix: re-run the command that wrote it.")
    return {n: tuple(data[n]) if isinstance(data[n], list) else data[n] for n in names}


class JsonRecord:
    """to_json / from_json for a dataclass whose fields are JSON values (tuples written as lists)
    or records named in NESTED, which write and read their own JSON."""

    NESTED: ClassVar[dict[str, Any]] = {}  # field -> its record type (with to_json / from_json)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON values, keys in field order."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return json_values(values | {k: getattr(self, k).to_json() for k in self.NESTED})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The record from its JSON object (extra keys are ignored: written by a later version)."""
        values = fields_of([f.name for f in dataclasses.fields(cls)], data, cls.__name__)  # type: ignore[arg-type]
        return cls(**values | {k: t.from_json(values[k]) for k, t in cls.NESTED.items()})
