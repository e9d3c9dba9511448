"""Config helpers shared by every component: named presets with overrides, range checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from mm2latent_core.errors import ConfigError

CfgT = TypeVar("CfgT")


def resolve_preset(presets: Mapping[str, CfgT], name: str, overrides: Mapping[str, Any]) -> CfgT:
    """Return preset `name` with `overrides` applied; unknown names/fields raise ConfigError.

    Args:
        presets: named config instances.
        name: the preset to start from.
        overrides: field -> value replacements (dataclasses.replace).
    """
    if name not in presets:
        raise ConfigError(f"Unknown preset {name!r}; known: {', '.join(sorted(presets))}.")
    base = presets[name]
    fields = {f.name for f in dataclasses.fields(base)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"Unknown config field(s) {', '.join(unknown)} for {type(base).__name__}; "
            f"valid: {', '.join(sorted(fields))}."
        )
    return dataclasses.replace(base, **overrides)  # type: ignore[type-var]


def require_positive(cfg: object, names: Iterable[str]) -> None:
    """Raise ConfigError if any named int field of `cfg` is not a positive integer."""
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(
                f"{type(cfg).__name__}.{name} must be a positive int, got {value!r}."
            )
