"""The project's modalities. Adding one: write mm2latent/modalities/<name>.py with a SPEC, add a line here.

A modality kept outside the project (a plugin, or a test's toy) joins every command through
the environment variable MM2LATENT_MODALITIES: a comma list of `module:ATTRIBUTE` naming
ModalitySpecs, appended after the project's in the order given. It is read on each call of
`default_registry()`, so it reaches Prefect tasks and spawned DataLoader workers alike.
"""

from __future__ import annotations

import importlib
import os

from mm2latent.modalities import farl, flame, image, mask, sketch, w
from mm2latent_core.errors import ConfigError
from mm2latent_core.modalities.spec import ModalityRegistry, ModalitySpec

PLUGINS_ENV = "MM2LATENT_MODALITIES"


def default_registry() -> ModalityRegistry:
    """image, mask, sketch, w, flame, farl (this order fixes manifest columns: keep it), then
    the specs named by MM2LATENT_MODALITIES."""
    registry = ModalityRegistry((image.SPEC, mask.SPEC, sketch.SPEC, w.SPEC, flame.SPEC, farl.SPEC))
    for spec in plugin_specs(os.environ.get(PLUGINS_ENV, "")):
        registry = registry.with_spec(spec)
    return registry


def plugin_specs(names: str) -> list[ModalitySpec]:
    """The ModalitySpecs a comma list of `module:ATTRIBUTE` names; ConfigError for a bad entry."""
    specs = []
    for entry in (e.strip() for e in names.split(",")):
        if not entry:
            continue
        module_name, _, attribute = entry.partition(":")
        try:
            spec = getattr(importlib.import_module(module_name), attribute or "SPEC")
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"{PLUGINS_ENV}={names!r}: cannot load {entry!r} ({e}). Fix: name "
                              "an importable module and its ModalitySpec, e.g. mypkg.depth:SPEC, "
                              "or unset the variable.") from e
        if not isinstance(spec, ModalitySpec):
            raise ConfigError(f"{PLUGINS_ENV}: {entry!r} is a {type(spec).__name__}, not a "
                              "ModalitySpec. Fix: name the module's SPEC.")
        specs.append(spec)
    return specs
